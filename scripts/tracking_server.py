"""Start an MLflow tracking server on PostgreSQL that also serves the artifacts (`make server`).

    python scripts/tracking_server.py [--backend-store-uri postgresql://user@host:5432/vaelab_mlflow]
        [--artifacts-destination ./mlartifacts-server | s3://bucket/prefix] [--host 127.0.0.1] [--port 5001]
        [--basic-auth] [--workers N]

The database is created first if the PostgreSQL server does not have it yet. Clients then need only
``MLFLOW_TRACKING_URI=http://HOST:PORT``: they upload and download artifacts through the server, so
workers need no access to the artifact store. The server listens on 127.0.0.1 unless ``--host`` says
otherwise; on another interface, turn on ``--basic-auth`` (MLflow's ``--app-name basic-auth``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from urllib.parse import urlsplit, urlunsplit

DEFAULT_BACKEND = "postgresql://postgres@127.0.0.1:5432/vaelab_mlflow"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/tracking_server.py", description=__doc__.splitlines()[0])
    parser.add_argument("--backend-store-uri", default=os.environ.get("VAELAB_MLFLOW_BACKEND", DEFAULT_BACKEND))
    parser.add_argument("--artifacts-destination", default="./mlartifacts-server")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--basic-auth", action="store_true", help="require a user name and password (MLflow basic-auth app)")
    args = parser.parse_args(argv)

    backend = with_installed_driver(args.backend_store_uri)
    if urlsplit(backend).scheme.startswith("postgresql"):
        create_database_if_missing(backend)
    mlflow = shutil.which("mlflow") or os.path.join(os.path.dirname(sys.executable), "mlflow")
    command = [
        mlflow,
        "server",
        "--backend-store-uri",
        backend,
        "--serve-artifacts",
        "--artifacts-destination",
        args.artifacts_destination,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
    ]
    if args.basic_auth:
        command += ["--app-name", "basic-auth"]
    print(f"MLflow tracking server on http://{args.host}:{args.port} (store {_redacted(args.backend_store_uri)})", flush=True)
    # exec: the server gets this process's id, so stopping it (Ctrl-C, kill) stops the server itself.
    os.execv(command[0], command)


def with_installed_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3; vaelab installs psycopg2, so name it unless psycopg is there."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def create_database_if_missing(url: str) -> None:
    """Create the database that ``url`` names on its PostgreSQL server, unless it exists."""
    import psycopg2
    from psycopg2 import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit(f"{_redacted(url)}: name a database after the host, e.g. .../vaelab_mlflow")
    # Connect to the server's maintenance database to create the named one.
    maintenance = urlunsplit((parts.scheme.split("+")[0], parts.netloc, "/postgres", parts.query, ""))
    try:
        connection = psycopg2.connect(maintenance, connect_timeout=10)
    except psycopg2.OperationalError as err:
        raise SystemExit(f"cannot reach PostgreSQL at {_redacted(maintenance)}: {str(err).strip().splitlines()[0]}") from None
    connection.autocommit = True  # CREATE DATABASE refuses to run inside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"created database {name}", flush=True)
    finally:
        connection.close()


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


if __name__ == "__main__":
    main()
