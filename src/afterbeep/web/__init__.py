"""The web app: server-rendered pages (Jinja2) with a little htmx and plain JavaScript, served
by the same FastAPI app as the API, outside `/v1`. Every page's data comes through the same
services as the API (`afterbeep.services`); this package only renders and redirects."""
