"""The only layer that talks to people: the command line, the HTTP service and the web page."""
