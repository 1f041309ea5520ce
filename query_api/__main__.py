"""`python -m query_api`: the query service process."""

from infra.serve import serve
from infra.settings import Settings
from query_api.app import create_app

settings = Settings()
serve(create_app(settings), settings, "query_api")
