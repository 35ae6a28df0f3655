"""The ``WiseFuseLambda`` Block: where a flow's plan units run, saved once in Prefect.

A Block keeps the settings that differ per environment (local or AWS, region, function
prefix, store, credentials) out of the flow's code, as Prefect users expect: the same
decorated flow runs on the embedded local Lambda on a laptop and on AWS in production,
by loading another block. ``prefect block register -m wisefuse_plugins.providers.prefect``
registers it (the ``prefect.collections`` entry point makes Prefect find it on its own),
and ``Block.load("wisefuse-lambda/NAME")`` returns it.

AWS credentials come from a prefect-aws ``AwsCredentials`` block (or boto3's usual chain
when none is set). They are only used to build boto3 clients in this process: never
logged, never written into unit specs, plans or function environments (functions on AWS
use their execution role).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import Field

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir.names import safe_name

if TYPE_CHECKING:
    from wisefuse_plugins.runtime.invoker import Invoker
    from wisefuse_plugins.runtime.store import Store

__all__ = ["WiseFuseLambda", "close_local_lambdas"]

#: Seconds an idle local worker stays warm; long, as a flow is often run again soon.
LOCAL_KEEP_ALIVE_S = 900.0


class WiseFuseLambda(Block):
    """Run WiseFuse plan units on AWS Lambda, or on the embedded local Lambda.

    ``backend="local"`` (default) needs nothing but this machine: units run on the local
    Lambda service (started on demand, shared by every flow run and worker process on the
    machine, so warm environments outlive a run), from their deployment packages, with
    Lambda's memory, CPU share and billing. ``backend="aws"`` deploys one
    function per unit (``function_prefix``-flow-unit) with ``execution_role_arn`` and keeps
    data in an S3 store (``store_url="s3://bucket/prefix"``).
    """

    _block_type_name = "WiseFuse Lambda"
    _block_type_slug = "wisefuse-lambda"
    _description = (
        "Where WiseFuse runs a flow's plan units: AWS Lambda, or the embedded local Lambda."
    )
    _documentation_url = "https://github.com/wisefuse/wisefuse-plugins/blob/main/docs/prefect.md"  # type: ignore[assignment]

    backend: Literal["local", "aws"] = Field(
        default="local", description="'local': the embedded Lambda on this machine; 'aws'."
    )
    region: str | None = Field(
        default=None, description="AWS region (default: the credentials' or boto3's)."
    )
    function_prefix: str = Field(
        default="wisefuse", description="Prefix of the Lambda function names of the units."
    )
    store_url: str | None = Field(
        default=None,
        description=(
            "Where unit outputs live: s3://bucket/prefix (required for 'aws'), or a folder "
            "(default for 'local': $WISEFUSE_HOME/store)."
        ),
    )
    aws_credentials: AwsCredentials | None = Field(
        default=None, description="prefect-aws credentials; default: boto3's usual chain."
    )
    execution_role_arn: str | None = Field(
        default=None, description="IAM role of the functions (required for 'aws')."
    )
    layers: list[str] = Field(
        default_factory=list, description="Layer ARNs with the flow's dependencies ('aws')."
    )
    concurrency_limit: int = Field(
        default=16,
        ge=1,
        description="'local': unit invocations running at once on this machine's local Lambda.",
    )
    keep_outputs: bool = Field(
        default=False,
        description=(
            "Keep each run's intermediate outputs in the store (all of them: small ones "
            "are then not passed by value)."
        ),
    )
    local_preload: list[str] = Field(
        default_factory=list,
        description=(
            "'local' only: modules a fork server imports once (e.g. prefect) so cold starts "
            "are fast; their import time then no longer shows in INIT, as it would on Lambda."
        ),
    )

    # ---------------------------------------------------------------- building

    def make_store(self) -> Store:
        """The data store units read and write (S3 through the credentials' session)."""
        from wisefuse_plugins.runtime.store import open_store

        url = self._store_url()
        if url.startswith("s3://"):
            from urllib.parse import urlparse

            from wisefuse_plugins.runtime.s3store import S3Store

            parsed = urlparse(url)
            return S3Store(
                parsed.netloc, parsed.path.lstrip("/"), client=self.boto3_session().client("s3")
            )
        return open_store(url)

    def make_backend(self, code_root: str | Path, namespace: str) -> Invoker:
        """An executor ``Invoker`` whose functions are named ``<prefix>-<namespace>-<unit>``.

        ``namespace`` (the flow's name) keeps two flows with a unit of the same id apart.
        """
        prefix = safe_name(f"{self.function_prefix}-{namespace}")
        if self.backend == "local":
            from wisefuse_plugins.runtime.backends.service.client import shared_units

            return shared_units(
                code_root=Path(code_root).resolve(),
                store_url=self._store_url(),
                prefix=prefix,
                options=self._local_options(),
            )
        if not self.execution_role_arn:
            raise WiseFuseError(
                "the WiseFuseLambda block has backend 'aws' but no execution_role_arn",
                hint="set execution_role_arn to the IAM role the unit functions run with",
            )
        from botocore.config import Config

        from wisefuse_plugins.runtime.backends.aws import READ_TIMEOUT_S, AwsLambdaBackend

        session = self.boto3_session()
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            read_timeout=READ_TIMEOUT_S,
            connect_timeout=10,
        )
        return AwsLambdaBackend(
            role_arn=self.execution_role_arn,
            store_url=self._store_url(),
            prefix=prefix,
            region=self._region(session),
            layers=tuple(self.layers),
            code_root=code_root,
            client_factory=lambda service: session.client(
                service, region_name=self._region(session), config=config
            ),
        )

    def boto3_session(self) -> Any:
        """A boto3 session from the ``AwsCredentials`` block, else from boto3's default chain."""
        if self.aws_credentials is not None:
            return self.aws_credentials.get_boto3_session()
        from wisefuse_plugins.runtime.s3store import boto3_module

        return boto3_module("the WiseFuseLambda block").Session(region_name=self.region)

    def _region(self, session: Any) -> str | None:
        return self.region or getattr(session, "region_name", None)

    def _store_url(self) -> str:
        if self.store_url:
            url = self.store_url
        elif self.backend == "aws":
            url = ""
        else:
            from wisefuse_plugins.runtime.store import wisefuse_home

            url = str(wisefuse_home() / "store")
        if self.backend == "aws" and not url.startswith("s3://"):
            raise WiseFuseError(
                f"the WiseFuseLambda block has backend 'aws' but store_url {url or None!r}",
                hint="set store_url to s3://bucket/prefix: functions on Lambda exchange data in S3",
            )
        return url

    def _local_options(self) -> dict[str, Any]:
        """The local service's engine options (blocks asking alike share one service)."""
        options: dict[str, Any] = {
            "keep_alive_s": LOCAL_KEEP_ALIVE_S,
            "concurrency_limit": self.concurrency_limit,
        }
        if self.local_preload:
            options["preload"] = list(self.local_preload)
        return options


# ------------------------------------------------------------------- local Lambda


def close_local_lambdas() -> None:
    """Stop the local Lambda services this process started (tests call it at their end)."""
    from wisefuse_plugins.runtime.backends.service.client import close_shared

    close_shared()
