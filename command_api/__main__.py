"""`python -m command_api`: the command service process."""

from command_api.app import create_app
from infra.serve import serve
from infra.settings import Settings

settings = Settings()
serve(create_app(settings), settings, "command_api")
