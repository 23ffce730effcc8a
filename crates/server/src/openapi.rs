//! The OpenAPI 3.1 document of the whole HTTP API, served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::Problem;
use crate::routes::{self, CommandAccepted};

#[derive(OpenApi)]
#[openapi(
    info(title = "idstream", description = "Event-sourced identity and access service. Commands answer with the log \
        position of their last event (`position`, `X-Idstream-Position`); queries accept `X-Idstream-Min-Position` \
        or `min_position` and wait for it (bounded), then answer 503 `not_caught_up` with Retry-After. \
        Errors are RFC 9457 problem+json with a stable `code`."),
    paths(
        routes::ops::healthz, routes::ops::readyz, routes::ops::metrics, routes::ops::openapi,
        routes::ops::read_models, routes::ops::rebuild,
        routes::tenants::create_tenant, routes::tenants::list_tenants, routes::tenants::get_tenant, routes::tenants::rename_tenant,
        routes::users::create_user, routes::users::list_members, routes::users::get_user,
        routes::users::suspend_user, routes::users::reinstate_user,
        routes::memberships::get_roles, routes::memberships::assign_role, routes::memberships::revoke_role,
    ),
    components(schemas(Problem, CommandAccepted)),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants"), (name = "users"), (name = "roles"), (name = "operations"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(
                "The bootstrap admin token (configuration `admin_token`, or the file `admin-token` in the data directory)",
            )).build()),
        );
    }
}
