//! `/courses` and `/courses/:id/enrollments`.

use axum::{
    Router,
    extract::State,
    routing::{delete, get},
};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::extract::{AuthUser, Json, OptionalJson, Path, Query};
use crate::{
    domain::{Course, CourseId, Enrollment, Page, UserId},
    error::{ApiJson, AppResult, Created},
    service::{
        courses::{CreateCourse, EnrollInput, UpdateCourse},
        paging::PageQuery,
    },
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/courses", get(list).post(create))
        .route("/courses/{id}", get(show).patch(update).delete(remove))
        .route(
            "/courses/{id}/enrollments",
            get(list_enrollments).post(enroll),
        )
        .route("/courses/{id}/enrollments/{user_id}", delete(unenroll))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CourseQuery {
    /// Only courses the caller teaches or is enrolled in.
    #[serde(default)]
    pub mine: bool,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Create a course taught by the caller (instructors and admins).
#[utoipa::path(post, path = "/api/v1/courses", tag = "courses", security(("bearer" = [])), request_body = CreateCourse,
    responses((status = 201, body = Course), (status = 400, description = "VALIDATION_FAILED"),
              (status = 403, description = "FORBIDDEN: students cannot create courses")))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Json(input): Json<CreateCourse>,
) -> AppResult<Created<Course>> {
    state.courses.create(&actor, input).await.map(Created)
}

/// List courses, newest first.
#[utoipa::path(get, path = "/api/v1/courses", tag = "courses", security(("bearer" = [])), params(CourseQuery),
    responses((status = 200, body = Page<Course>)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Query(query): Query<CourseQuery>,
) -> AppResult<ApiJson<Page<Course>>> {
    let page = PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    }
    .parse()?;
    state
        .courses
        .list(&actor, query.mine, page)
        .await
        .map(ApiJson)
}

/// One course (visible to anyone signed in).
#[utoipa::path(get, path = "/api/v1/courses/{id}", tag = "courses", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Course), (status = 404, description = "NOT_FOUND")))]
pub async fn show(
    State(state): State<AppState>,
    AuthUser(_actor): AuthUser,
    Path(id): Path<CourseId>,
) -> AppResult<ApiJson<Course>> {
    state.courses.get(id).await.map(ApiJson)
}

/// Change a course's title or description (its instructor, admins).
#[utoipa::path(patch, path = "/api/v1/courses/{id}", tag = "courses", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = UpdateCourse,
    responses((status = 200, body = Course), (status = 403, description = "FORBIDDEN"), (status = 404, description = "NOT_FOUND")))]
pub async fn update(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<CourseId>,
    Json(input): Json<UpdateCourse>,
) -> AppResult<ApiJson<Course>> {
    state.courses.update(&actor, id, input).await.map(ApiJson)
}

/// Delete a course with its enrollments and sessions (its instructor, admins).
#[utoipa::path(delete, path = "/api/v1/courses/{id}", tag = "courses", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "`{}`"), (status = 403, description = "FORBIDDEN"), (status = 404, description = "NOT_FOUND")))]
pub async fn remove(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<CourseId>,
) -> AppResult<ApiJson<Value>> {
    state.courses.delete(&actor, id).await?;
    Ok(ApiJson(json!({})))
}

/// Enroll the caller, or (instructor, admin) the user named by `userId`.
#[utoipa::path(post, path = "/api/v1/courses/{id}/enrollments", tag = "courses", security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = EnrollInput, description = "optional"),
    responses((status = 201, body = Enrollment), (status = 403, description = "FORBIDDEN"), (status = 404, description = "NOT_FOUND"),
              (status = 409, description = "CONFLICT: already enrolled, or the course's own instructor")))]
pub async fn enroll(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<CourseId>,
    OptionalJson(input): OptionalJson<EnrollInput>,
) -> AppResult<Created<Enrollment>> {
    state.courses.enroll(&actor, id, input).await.map(Created)
}

/// A course's enrollments in the order people enrolled (its instructor, admins).
#[utoipa::path(get, path = "/api/v1/courses/{id}/enrollments", tag = "courses", security(("bearer" = [])),
    params(("id" = String, Path), PageQuery),
    responses((status = 200, body = Page<Enrollment>), (status = 403, description = "FORBIDDEN")))]
pub async fn list_enrollments(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<CourseId>,
    Query(query): Query<PageQuery>,
) -> AppResult<ApiJson<Page<Enrollment>>> {
    let page = query.parse()?;
    state
        .courses
        .list_enrollments(&actor, id, page)
        .await
        .map(ApiJson)
}

/// Remove an enrollment (the enrolled user, the instructor, admins).
#[utoipa::path(delete, path = "/api/v1/courses/{id}/enrollments/{userId}", tag = "courses", security(("bearer" = [])),
    params(("id" = String, Path), ("userId" = String, Path)),
    responses((status = 200, description = "`{}`"), (status = 403, description = "FORBIDDEN"), (status = 404, description = "NOT_FOUND")))]
pub async fn unenroll(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path((id, user)): Path<(CourseId, UserId)>,
) -> AppResult<ApiJson<Value>> {
    state.courses.unenroll(&actor, id, user).await?;
    Ok(ApiJson(json!({})))
}
