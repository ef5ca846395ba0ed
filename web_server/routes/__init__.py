"""The HTTP routes, one APIRouter a part of the server (create_app includes them)."""
