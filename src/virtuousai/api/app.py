"""The app factory. Engine, sessions and in-process workers are built in the lifespan, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from virtuousai import __version__
from virtuousai.api.health import router as health_router
from virtuousai.api.middleware import RequestIdMiddleware
from virtuousai.api.problems import PROBLEM_RESPONSES, install_problem_handlers
from virtuousai.config import Settings
from virtuousai.orgs.router import router as orgs_router
from virtuousai.store.engine import make_engine, make_sessionmaker

API_PREFIX = "/api/v1"


def build_api_router() -> APIRouter:
    """Every primitive's router, mounted under /api/v1 with the problem responses documented."""
    api = APIRouter(prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    api.include_router(orgs_router)
    return api


def create_app(settings: Settings | None = None, *, workers: int = 0) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.resolved_database_url)
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="VirtuousAI",
        version=__version__,
        description="The execution backbone for AI-powered data workflows.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.worker_count = workers
    app.add_middleware(RequestIdMiddleware)
    install_problem_handlers(app)
    app.include_router(health_router)
    app.include_router(build_api_router())
    return app
