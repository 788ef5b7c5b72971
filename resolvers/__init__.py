"""The executable schema: the SDL files of `schema/` bound to the resolvers of this package."""

from ariadne import EnumType, load_schema_from_path
from ariadne.contrib.federation import make_federated_schema
from graphql import GraphQLSchema

from resolvers.entities import (
    analysis_run_type,
    approval_type,
    deployment_type,
    project_type,
    revision_type,
    route_type,
    shadow_stats_type,
)
from resolvers.limits import cap_entities
from resolvers.mutation import mutation
from resolvers.query import query
from resolvers.scalars import datetime_scalar, json_scalar
from resolvers.subscription import event_type, subscription
from resolvers.webhooks import webhook_mutation, webhook_query
from schema import SCHEMA_DIR
from store import models

ENUMS = [
    EnumType(enum.__name__, enum)
    for enum in (
        models.DeploymentLifecycle,
        models.DeploymentLifecycleSubStep,
        models.RouteStatus,
        models.RouteTrafficStatus,
        models.DeploymentStrategyType,
        models.SchedulingResult,
        models.MetricProvider,
        models.AnalysisRunKind,
        models.AnalysisPhase,
        models.ShadowCompare,
        models.WebhookDeliveryStatus,
    )
]


def type_defs() -> str:
    return load_schema_from_path(str(SCHEMA_DIR))


def make_schema(*, max_representations: int = 100) -> GraphQLSchema:
    schema = make_federated_schema(
        type_defs(),
        query,
        mutation,
        deployment_type,
        revision_type,
        route_type,
        project_type,
        analysis_run_type,
        approval_type,
        shadow_stats_type,
        subscription,
        event_type,
        webhook_query,
        webhook_mutation,
        datetime_scalar,
        json_scalar,
        *ENUMS,
        convert_names_case=True,
    )
    cap_entities(schema, max_representations)
    return schema
