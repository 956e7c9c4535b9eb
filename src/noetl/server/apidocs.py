"""``/docs``: the API's Swagger UI page, served entirely by this server.

FastAPI's default page loads Swagger UI's script and style from a CDN, so it is blank on a machine
without internet access. The assets come from the ``swagger-ui-bundle`` package instead, mounted
under ``/docs/assets``; the page reads ``/openapi.json``. (ReDoc, also CDN-based, is not served.)
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    """Add ``GET /docs`` and its static assets to ``app`` (made with ``docs_url=None``)."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from starlette.staticfiles import StaticFiles

    app.mount(ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
