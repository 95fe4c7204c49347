"""The app factory: every primitive's router mounted under ``/api/v1``. The engine, sessions and the process's
services (runtime, orchestrator, cron: ``process.py``) are built in the lifespan, never at import."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi_offline import FastAPIOffline

from virtuousai import __version__
from virtuousai.actions.router import router as actions_router
from virtuousai.agents.router import router as agents_router
from virtuousai.agents.router import runs_router as agent_runs_router
from virtuousai.agents.router import tools_router
from virtuousai.api.access import router as access_router
from virtuousai.api.body_limit import BodyLimitMiddleware
from virtuousai.api.deps import get_principal, reject_nul_characters, require_json_body
from virtuousai.api.health import router as health_router
from virtuousai.api.middleware import RequestIdMiddleware
from virtuousai.api.openapi import complete_openapi
from virtuousai.api.problems import PROBLEM_RESPONSES, install_problem_handlers
from virtuousai.automations.router import router as automations_router
from virtuousai.automations.router import runs_router as automation_runs_router
from virtuousai.automations.router import templates_router as template_instantiation_router
from virtuousai.config import Settings
from virtuousai.connections.router import router as connections_router
from virtuousai.data.router import router as data_router
from virtuousai.flashboards.router import router as flashboards_router
from virtuousai.llm.router import router as models_router
from virtuousai.orgs.verified_keys import VerifiedKeys
from virtuousai.process import ProcessServices
from virtuousai.store.engine import make_engine, make_sessionmaker
from virtuousai.templates.router import router as templates_router

API_PREFIX = "/api/v1"
# Routes whose bodies may be larger than VAI_MAX_BODY_BYTES: {path prefix: bytes} (api/body_limit.py). None yet:
# a file upload would name itself here.
LARGER_BODIES: dict[str, int] = {}
DOCS_ASSETS = "/docs-assets"


@functools.cache
def build_api_router() -> APIRouter:
    """Every primitive's router, mounted under /api/v1 with the problem responses documented.

    Built once per process and shared by its apps: FastAPI builds every route's dependants and validators when the
    router is included (~0.2 s for ours, measured), and routes hold no app state. A process runs one app; the test
    suite makes about a thousand, which paid ~0.2 s each (about 2 minutes of a run on 2 cores) before this cache.
    """
    # Every /api/v1 route authenticates (handlers that need the principal get the same cached one), refuses a body
    # that is not declared as JSON where it takes one (415), then refuses U+0000 anywhere in the request.
    api = APIRouter(
        prefix=API_PREFIX,
        responses=PROBLEM_RESPONSES,
        dependencies=[Depends(get_principal), Depends(require_json_body), Depends(reject_nul_characters)],
    )
    api.include_router(access_router)
    api.include_router(actions_router)
    api.include_router(connections_router)
    api.include_router(templates_router)
    api.include_router(template_instantiation_router)
    api.include_router(automations_router)
    api.include_router(automation_runs_router)
    api.include_router(data_router)
    api.include_router(flashboards_router)
    api.include_router(agents_router)
    api.include_router(agent_runs_router)
    api.include_router(tools_router)
    api.include_router(models_router)
    return api


def create_app(settings: Settings | None = None, *, workers: int = 0) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.resolved_database_url)
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
        # `workers` in-process workers (0: none), the wake-up listener, the orchestrator of parent runs and, next
        # to the workers, the sweep and cron. On shutdown (SIGTERM) the workers drain.
        services = ProcessServices(engine, app.state.sessions, settings, workers=workers)
        app.state.services = services
        app.state.runtime = services.runtime
        app.state.registry = services.registry
        app.state.orchestrator = services.orchestrator
        await services.start()
        # Keys verified a moment ago are forgotten when access changes, here or (on PostgreSQL) in any process.
        forget_on_access_change = services.runtime.hub.subscribe(app.state.verified_keys.on_wakeup)
        # Lake queries: their query processes start with the first query and are stopped here. The engine is the
        # process's one: the in-process workers' kinds (generate_query, flashboard tiles) share it.
        app.state.lake_engine = services.lake_engine()
        try:
            yield
        finally:
            forget_on_access_change()
            await services.stop()
            app.state.lake_engine.close()
            await engine.dispose()

    # /docs (Swagger UI) and /redoc load their scripts and styles from this server (fastapi-offline ships them), not
    # from a CDN: they work on a machine without internet. FastAPI documents this as self-hosting the docs' assets.
    app = FastAPIOffline(
        title="VirtuousAI",
        version=__version__,
        description="The execution backbone for AI-powered data workflows.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
    )
    app.state.settings = settings
    app.state.worker_count = workers
    app.state.verified_keys = VerifiedKeys(settings.auth_cache_ttl_s)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, larger=LARGER_BODIES)
    app.add_middleware(RequestIdMiddleware)  # added last: the outermost, so even a 413 carries the request id
    install_problem_handlers(app)
    app.include_router(health_router)
    app.include_router(build_api_router())
    complete_openapi(app)
    return app
