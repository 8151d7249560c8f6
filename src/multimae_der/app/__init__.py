"""The user-facing layer: the web app (upload a clip, see prediction, explanation and faithfulness) and the
end-to-end demo."""
