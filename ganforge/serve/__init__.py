"""The HTTP API and the web page (``ganforge serve``); needs the ``serve`` extra."""
