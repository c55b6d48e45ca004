//! Provisioning over the REST API: users, courses, enrollments and live sessions, with
//! bounded concurrency. Setup is not measured, so it retries what an overloaded server
//! asks it to retry (503 and 429 with `Retry-After`).

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, anyhow, bail};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

pub const PASSWORD: &str = "bench-password-1234";
const RETRIES: u32 = 8;

/// A signed-up account.
#[derive(Clone, Debug)]
pub struct Account {
    pub token: String,
}

/// A course and its chat room.
#[derive(Clone, Debug)]
pub struct Course {
    pub id: String,
    pub room: String,
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    base: String,
    /// Makes this run's e-mail addresses unique on a server that outlives it.
    tag: String,
}

/// The status and JSON body of one answer.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Api {
    pub fn new(http: reqwest::Client, addr: SocketAddr) -> Api {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Api {
            http,
            base: format!("http://{addr}/api/v1"),
            tag: format!("{}-{nanos:x}", std::process::id()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A unique e-mail address for user `n` of this run.
    pub fn email(&self, role: &str, n: usize) -> String {
        format!("bench-{role}-{n}-{}@example.com", self.tag)
    }

    /// One JSON request, without retries.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let reply = request.send().await.with_context(|| path.to_owned())?;
        let status = reply.status().as_u16();
        let text = reply.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body })
    }

    /// A request that must answer `want`; 503 and 429 are waited out and retried.
    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
        want: u16,
    ) -> anyhow::Result<Value> {
        let mut attempt = 0;
        loop {
            let mut reply = self.call(method.clone(), path, token, Some(&body)).await?;
            if reply.status == want {
                return Ok(reply.body["data"].take());
            }
            attempt += 1;
            if matches!(reply.status, 429 | 503) && attempt < RETRIES {
                let wait = reply.body["error"]["details"]["retryAfter"]
                    .as_f64()
                    .unwrap_or(1.0)
                    .clamp(0.05, 10.0);
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                continue;
            }
            bail!("{method} {path}: {} {}", reply.status, reply.body);
        }
    }

    pub async fn register(&self, email: &str, role: &str) -> anyhow::Result<Account> {
        let body =
            json!({ "email": email, "password": PASSWORD, "name": "Bench User", "role": role });
        let data = self
            .expect(reqwest::Method::POST, "/auth/register", None, body, 201)
            .await?;
        Ok(Account {
            token: str_field(&data, "accessToken")?,
        })
    }

    /// `count` students, `concurrency` sign-ups at a time.
    pub async fn students(&self, count: usize, concurrency: usize) -> anyhow::Result<Vec<Account>> {
        stream::iter(0..count)
            .map(|n| {
                let email = self.email("student", n);
                async move { self.register(&email, "student").await }
            })
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    pub async fn course(&self, instructor: &str, title: &str) -> anyhow::Result<Course> {
        let data = self
            .expect(
                reqwest::Method::POST,
                "/courses",
                Some(instructor),
                json!({ "title": title }),
                201,
            )
            .await?;
        Ok(Course {
            id: str_field(&data, "id")?,
            room: str_field(&data, "roomId")?,
        })
    }

    pub async fn courses(
        &self,
        instructor: &str,
        count: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<Course>> {
        stream::iter(0..count)
            .map(|n| async move { self.course(instructor, &format!("Bench course {n}")).await })
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    /// Enrolls each `(student, course)` pair, the student enrolling itself.
    pub async fn enroll_all(
        &self,
        pairs: &[(&Account, &Course)],
        concurrency: usize,
    ) -> anyhow::Result<()> {
        stream::iter(pairs)
            .map(|(student, course)| async move {
                self.expect(
                    reqwest::Method::POST,
                    &format!("/courses/{}/enrollments", course.id),
                    Some(&student.token),
                    json!({}),
                    201,
                )
                .await
                .map(|_| ())
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await
    }

    /// A session of `course`, started: its id.
    pub async fn live_session(&self, instructor: &str, course: &Course) -> anyhow::Result<String> {
        let data = self
            .expect(
                reqwest::Method::POST,
                &format!("/courses/{}/sessions", course.id),
                Some(instructor),
                json!({ "title": "Bench session" }),
                201,
            )
            .await?;
        let id = str_field(&data, "id")?;
        self.expect(
            reqwest::Method::POST,
            &format!("/sessions/{id}/start"),
            Some(instructor),
            json!({}),
            200,
        )
        .await?;
        Ok(id)
    }
}

fn str_field(value: &Value, key: &str) -> anyhow::Result<String> {
    value[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("answer without {key}: {value}"))
}
