//! Courses and enrollments, per the "Courses, enrollments, live sessions" section of the
//! contract: who may create, read, change and delete a course, who may enroll whom, and how
//! the lists are ordered and paged.

use lyceum_tests::check::*;
use lyceum_tests::paging::{walk, walk_from};
use lyceum_tests::{Account, Backend, Client, Reply, TestServer, backend_tests};
use serde_json::{Value, json};

backend_tests!(
    creating_a_course_answers_201_with_the_course,
    only_instructors_and_admins_create_courses,
    course_input_is_validated_field_by_field,
    anyone_signed_in_reads_a_course_and_unknown_ids_are_not_found,
    courses_are_listed_newest_first_and_paged_without_repeats_or_skips,
    course_cursors_stay_stable_while_courses_come_and_go,
    list_paging_parameters_are_validated,
    mine_lists_only_courses_the_caller_teaches_or_is_enrolled_in,
    the_instructor_and_admins_may_patch_a_course,
    patch_and_delete_by_anyone_else_are_refused_and_change_nothing,
    a_failed_patch_leaves_the_course_unchanged,
    a_deleted_course_is_gone_everywhere,
    an_admin_may_delete_any_course,
    students_enroll_themselves_once,
    concurrent_enrollments_of_one_student_give_one_enrollment,
    the_instructor_cannot_enroll_in_their_own_course,
    enrolling_someone_else_takes_the_instructor_or_an_admin,
    enrolling_in_an_unknown_course_is_not_found,
    enrollments_are_listed_oldest_first_for_the_instructor_and_admins_only,
    a_student_may_leave_a_course_and_come_back,
    removing_enrollments_takes_self_the_instructor_or_an_admin,
    course_endpoints_require_a_token,
    unsupported_methods_on_course_paths_are_405,
);

// ---------------------------------------------------------------------------------------------
// Helpers

const COURSE_KEYS: [&str; 6] = [
    "createdAt",
    "description",
    "id",
    "instructorId",
    "roomId",
    "title",
];
const ENROLLMENT_KEYS: [&str; 3] = ["courseId", "createdAt", "userId"];

async fn create_course(srv: &TestServer, who: &Account, title: &str) -> Value {
    let reply = as_client(srv, who)
        .post(
            &api("/courses"),
            json!({"title": title, "description": format!("about {title}")}),
        )
        .await;
    assert_eq!(reply.status, 201, "create course: {}", reply.body);
    reply.data()
}

async fn get_course(srv: &TestServer, who: &Account, id: &str) -> Reply {
    as_client(srv, who)
        .get(&api(&format!("/courses/{id}")))
        .await
}

async fn enroll_other(srv: &TestServer, by: &Account, course: &Value, user: &str) -> Reply {
    as_client(srv, by)
        .post(
            &api(&format!("/courses/{}/enrollments", id_of(course))),
            json!({"userId": user}),
        )
        .await
}

async fn unenroll(srv: &TestServer, by: &Account, course: &Value, user: &str) -> Reply {
    as_client(srv, by)
        .delete(&api(&format!(
            "/courses/{}/enrollments/{user}",
            id_of(course)
        )))
        .await
}

/// The ids of a list's first page (default limit), checking the page shape.
async fn list_ids(client: &Client, path: &str) -> Vec<String> {
    let reply = client.get(path).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    let data = reply.data();
    assert_keys(&data, &["items", "nextCursor"]);
    ids(data["items"].as_array().unwrap())
}

async fn enrolled_user_ids(srv: &TestServer, by: &Account, course: &Value) -> Vec<String> {
    let reply = as_client(srv, by)
        .get(&api(&format!("/courses/{}/enrollments", id_of(course))))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["userId"].as_str().unwrap().to_owned())
        .collect()
}

fn sizes(pages: &[Vec<Value>]) -> Vec<usize> {
    pages.iter().map(Vec::len).collect()
}

// ---------------------------------------------------------------------------------------------
// Creating and reading

async fn creating_a_course_answers_201_with_the_course(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let teacher = srv.register("instructor").await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let reply = as_client(&srv, &teacher)
        .post(
            &api("/courses"),
            json!({"title": "  Compilers  ", "description": "Parsing, typing, codegen"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let course = reply.data();
    assert_keys(&course, &COURSE_KEYS);
    assert_uuid_v7(&course["id"]);
    assert_uuid_v7(&course["roomId"]);
    assert_ne!(
        course["roomId"], course["id"],
        "the course's chat room has its own id"
    );
    assert_eq!(course["title"], "Compilers", "the title is trimmed");
    assert_eq!(course["description"], "Parsing, typing, codegen");
    assert_eq!(
        course["instructorId"],
        teacher.id.as_str(),
        "the creator teaches the course"
    );
    let created = assert_utc_time(&course["createdAt"]);
    assert!(
        created >= before && created <= chrono::Utc::now() + chrono::Duration::seconds(1),
        "createdAt {created}"
    );

    // What was answered is what is stored.
    let read = get_course(&srv, &teacher, id_of(&course)).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.data(), course);

    // The description is optional and then empty (a string, never null).
    let bare = as_client(&srv, &teacher)
        .post(&api("/courses"), json!({"title": "Bare"}))
        .await;
    assert_eq!(bare.status, 201, "{}", bare.body);
    let bare = bare.data();
    assert_keys(&bare, &COURSE_KEYS);
    assert_eq!(bare["description"], "");
    assert_ne!(
        bare["roomId"], course["roomId"],
        "every course has its own room"
    );
}

async fn only_instructors_and_admins_create_courses(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let student = srv.register("student").await;
    let refused = as_client(&srv, &student)
        .post(&api("/courses"), json!({"title": "My own course"}))
        .await;
    refused.assert_error(403, "FORBIDDEN");

    let anonymous = srv
        .client()
        .post(&api("/courses"), json!({"title": "Nobody's course"}))
        .await;
    anonymous.assert_error(401, "UNAUTHORIZED");

    // Neither attempt created anything.
    assert!(
        list_ids(&as_client(&srv, &student), &api("/courses"))
            .await
            .is_empty()
    );

    let admin = srv.admin().await;
    let reply = as_client(&srv, &admin)
        .post(&api("/courses"), json!({"title": "Run by an admin"}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let course = reply.data();
    assert_eq!(course["instructorId"], admin.id.as_str());
    assert_eq!(
        list_ids(&as_client(&srv, &student), &api("/courses")).await,
        vec![id_of(&course).to_owned()]
    );
}

async fn course_input_is_validated_field_by_field(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let teacher = srv.register("instructor").await;
    let client = as_client(&srv, &teacher);
    let cases = [
        (json!({}), "title"),
        (json!({"description": "no title"}), "title"),
        (json!({"title": null}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"title": " \t\n "}), "title"),
        (json!({"title": 42}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        // 201 characters of two bytes each: too long counted in code points, too.
        (json!({"title": "é".repeat(201)}), "title"),
        (json!({"title": "bell\u{7}"}), "title"),
        (
            json!({"title": "Fine", "description": "d".repeat(10_001)}),
            "description",
        ),
        (
            json!({"title": "Fine", "description": ["not", "text"]}),
            "description",
        ),
    ];
    for (body, field) in cases {
        let reply = client.post(&api("/courses"), body.clone()).await;
        reply.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(reply.field(), field, "for {body}");
    }
    let reply = client
        .post_raw(&api("/courses"), "application/json", "{\"title\": ")
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "body");
    let reply = client
        .post_raw(&api("/courses"), "text/plain", "{\"title\": \"Plain\"}")
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "body");
    let reply = client
        .post_raw(&api("/courses"), "application/json", "[\"title\"]")
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");

    // None of them created a course.
    assert!(list_ids(&client, &api("/courses")).await.is_empty());

    // The limits themselves are allowed: 200 characters (after trimming, in code points) and a
    // 10,000-character description.
    let long_title = "é".repeat(200);
    let reply = client
        .post(
            &api("/courses"),
            json!({"title": format!("  {long_title}  "), "description": "d".repeat(10_000)}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let course = reply.data();
    assert_eq!(course["title"], long_title.as_str());
    assert_eq!(
        course["description"].as_str().unwrap().chars().count(),
        10_000
    );
    let reply = client
        .post(
            &api("/courses"),
            json!({"title": "x".repeat(200), "description": ""}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(list_ids(&client, &api("/courses")).await.len(), 2);
}

async fn anyone_signed_in_reads_a_course_and_unknown_ids_are_not_found(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let stranger = srv.register("student").await;
    let other_teacher = srv.register("instructor").await;
    let admin = srv.admin().await;
    for who in [&teacher, &stranger, &other_teacher, &admin] {
        let reply = get_course(&srv, who, id_of(&course)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            reply.data(),
            course,
            "everyone signed in sees the same course"
        );
    }
    get_course(&srv, &stranger, UNKNOWN_ID)
        .await
        .assert_error(404, "NOT_FOUND");
    for malformed in ["not-a-uuid", "123", "0190a000-0000-7000-8000-00000000000g"] {
        get_course(&srv, &stranger, malformed)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    srv.client()
        .get(&api(&format!("/courses/{}", id_of(&course))))
        .await
        .assert_error(401, "UNAUTHORIZED");
}

// ---------------------------------------------------------------------------------------------
// Listing

async fn courses_are_listed_newest_first_and_paged_without_repeats_or_skips(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let teacher = srv.register("instructor").await;
    let student = srv.register("student").await;
    let mut created = Vec::new();
    for n in 1..=5 {
        created
            .push(id_of(&create_course(&srv, &teacher, &format!("Course {n}")).await).to_owned());
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    let client = as_client(&srv, &student);

    // One page at the default limit holds everything, and says there is nothing more.
    assert_eq!(list_ids(&client, &api("/courses")).await, newest_first);
    let reply = client.get(&api("/courses")).await;
    assert_eq!(reply.data()["nextCursor"], Value::Null);
    for item in reply.data()["items"].as_array().unwrap() {
        assert_keys(item, &COURSE_KEYS);
    }

    // Pages of two: 2 + 2 + 1, in order, each course exactly once.
    let pages = walk(&client, &api("/courses"), 2).await;
    assert_eq!(sizes(&pages), vec![2, 2, 1]);
    assert_eq!(ids(&pages.concat()), newest_first);

    // A limit that divides the list exactly ends without an empty extra page.
    let pages = walk(&client, &api("/courses"), 5).await;
    assert_eq!(sizes(&pages), vec![5]);
    let pages = walk(&client, &api("/courses"), 1).await;
    assert_eq!(sizes(&pages), vec![1; 5]);
    assert_eq!(ids(&pages.concat()), newest_first);
    let pages = walk(&client, &api("/courses"), 100).await;
    assert_eq!(ids(&pages.concat()), newest_first);

    // The cursor is opaque: it is not simply one of the ids.
    let first = client.get(&api("/courses?limit=2")).await.data();
    let cursor = first["nextCursor"].as_str().unwrap();
    assert!(!created.iter().any(|id| id == cursor));
}

async fn course_cursors_stay_stable_while_courses_come_and_go(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let teacher = srv.register("instructor").await;
    let mut created = Vec::new();
    for n in 1..=5 {
        created
            .push(id_of(&create_course(&srv, &teacher, &format!("Course {n}")).await).to_owned());
    }
    let client = as_client(&srv, &teacher);
    let first = client.get(&api("/courses?limit=2")).await.data();
    assert_eq!(
        ids(first["items"].as_array().unwrap()),
        vec![created[4].clone(), created[3].clone()]
    );
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();

    // While the reader holds the cursor, a new course appears and the last course they saw is
    // deleted. The rest of the walk neither repeats nor skips anything older.
    create_course(&srv, &teacher, "Late arrival").await;
    let deleted = client
        .delete(&api(&format!("/courses/{}", created[3])))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);

    let second = client
        .get(&api(&format!("/courses?limit=2&cursor={cursor}")))
        .await
        .data();
    assert_eq!(
        ids(second["items"].as_array().unwrap()),
        vec![created[2].clone(), created[1].clone()]
    );
    let cursor = second["nextCursor"]
        .as_str()
        .expect("one course is left")
        .to_owned();
    let third = client
        .get(&api(&format!("/courses?limit=2&cursor={cursor}")))
        .await
        .data();
    assert_eq!(
        ids(third["items"].as_array().unwrap()),
        vec![created[0].clone()]
    );
    assert_eq!(third["nextCursor"], Value::Null);
}

async fn list_paging_parameters_are_validated(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let client = as_client(&srv, &teacher);
    let enrollments = api(&format!("/courses/{}/enrollments", id_of(&course)));
    for base in [api("/courses"), enrollments.clone()] {
        for limit in ["0", "101", "-1", "ten", "1.5", "99999999999"] {
            let reply = client.get(&format!("{base}?limit={limit}")).await;
            reply.assert_error(400, "VALIDATION_FAILED");
            assert_eq!(reply.field(), "limit", "{base}?limit={limit}");
        }
        for cursor in [
            "!!!",
            "not-base64-at-all%20",
            "AAAA",
            "0190a000-0000-7000-8000-000000000000",
        ] {
            let reply = client.get(&format!("{base}?cursor={cursor}")).await;
            reply.assert_error(400, "VALIDATION_FAILED");
            assert_eq!(reply.field(), "cursor", "{base}?cursor={cursor}");
        }
        for limit in ["1", "100"] {
            let reply = client.get(&format!("{base}?limit={limit}")).await;
            assert_eq!(reply.status, 200, "{base}?limit={limit}: {}", reply.body);
        }
        // An empty cursor, as in the contract's `?cursor=&limit=`, asks for the first page.
        let reply = client.get(&format!("{base}?cursor=&limit=2")).await;
        assert_eq!(reply.status, 200, "{base}?cursor=: {}", reply.body);
    }
    assert_eq!(
        list_ids(&client, &api("/courses?cursor=")).await,
        vec![id_of(&course).to_owned()]
    );
    let reply = client.get(&api("/courses?mine=perhaps")).await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "mine");
}

async fn mine_lists_only_courses_the_caller_teaches_or_is_enrolled_in(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("instructor").await;
    let bob = srv.register("instructor").await;
    let ada_course = create_course(&srv, &ada, "Ada's").await;
    let bob_course = create_course(&srv, &bob, "Bob's").await;
    let bob_second = create_course(&srv, &bob, "Bob's second").await;
    let carol = srv.register("student").await;
    let dave = srv.register("student").await;
    srv.enroll(&carol, &bob_course).await;

    let mine = |who: &Account| {
        let client = as_client(&srv, who);
        async move { list_ids(&client, &api("/courses?mine=true")).await }
    };
    assert_eq!(
        mine(&ada).await,
        vec![id_of(&ada_course).to_owned()],
        "what ada teaches"
    );
    assert_eq!(
        mine(&bob).await,
        vec![id_of(&bob_second).to_owned(), id_of(&bob_course).to_owned()]
    );
    assert_eq!(
        mine(&carol).await,
        vec![id_of(&bob_course).to_owned()],
        "what carol is enrolled in"
    );
    assert!(mine(&dave).await.is_empty(), "dave has no courses");

    // An instructor may enroll in someone else's course, and then it is theirs too, newest first.
    srv.enroll(&ada, &bob_second).await;
    assert_eq!(
        mine(&ada).await,
        vec![id_of(&bob_second).to_owned(), id_of(&ada_course).to_owned()]
    );
    let pages = walk(&as_client(&srv, &ada), &api("/courses?mine=true"), 1).await;
    assert_eq!(
        ids(&pages.concat()),
        vec![id_of(&bob_second).to_owned(), id_of(&ada_course).to_owned()]
    );

    // Leaving a course takes it out of `mine`; without `mine` (or with `mine=false`) everyone
    // sees every course.
    assert_eq!(
        unenroll(&srv, &carol, &bob_course, &carol.id).await.status,
        200
    );
    assert!(mine(&carol).await.is_empty());
    let all = vec![
        id_of(&bob_second).to_owned(),
        id_of(&bob_course).to_owned(),
        id_of(&ada_course).to_owned(),
    ];
    assert_eq!(
        list_ids(&as_client(&srv, &carol), &api("/courses")).await,
        all
    );
    assert_eq!(
        list_ids(&as_client(&srv, &carol), &api("/courses?mine=false")).await,
        all
    );
}

// ---------------------------------------------------------------------------------------------
// Changing and deleting

async fn the_instructor_and_admins_may_patch_a_course(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let path = api(&format!("/courses/{}", id_of(&course)));
    let client = as_client(&srv, &teacher);

    // Only the title: the description stays.
    let reply = client
        .patch(&path, json!({"title": "  Distributed Systems II "}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let patched = reply.data();
    assert_keys(&patched, &COURSE_KEYS);
    assert_eq!(patched["title"], "Distributed Systems II");
    assert_eq!(patched["description"], course["description"]);
    for key in ["id", "instructorId", "roomId", "createdAt"] {
        assert_eq!(patched[key], course[key], "{key} never changes");
    }

    // Only the description: the title stays.
    let reply = client
        .patch(&path, json!({"description": "Paxos, Raft, vector clocks"}))
        .await;
    let patched = reply.data();
    assert_eq!(patched["title"], "Distributed Systems II");
    assert_eq!(patched["description"], "Paxos, Raft, vector clocks");

    // The description may be emptied; an empty patch changes nothing.
    let reply = client.patch(&path, json!({"description": ""})).await;
    assert_eq!(reply.data()["description"], "");
    let reply = client.patch(&path, json!({})).await;
    assert_eq!(reply.status, 200);
    let unchanged = reply.data();
    assert_eq!(unchanged["title"], "Distributed Systems II");
    assert_eq!(unchanged["description"], "");

    // An admin may change any course; the instructor stays the instructor.
    let admin = srv.admin().await;
    let reply = as_client(&srv, &admin)
        .patch(
            &path,
            json!({"title": "Renamed by an admin", "description": "Both at once"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let patched = reply.data();
    assert_eq!(patched["title"], "Renamed by an admin");
    assert_eq!(patched["description"], "Both at once");
    assert_eq!(patched["instructorId"], teacher.id.as_str());

    // Reads see the change.
    let stranger = srv.register("student").await;
    assert_eq!(
        get_course(&srv, &stranger, id_of(&course)).await.data(),
        patched
    );
}

async fn patch_and_delete_by_anyone_else_are_refused_and_change_nothing(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (_teacher, course) = srv.course().await;
    let other_teacher = srv.register("instructor").await;
    let enrolled = srv.register("student").await;
    srv.enroll(&enrolled, &course).await;
    let stranger = srv.register("student").await;
    let path = api(&format!("/courses/{}", id_of(&course)));

    for who in [&other_teacher, &enrolled, &stranger] {
        let reply = as_client(&srv, who)
            .patch(&path, json!({"title": "Hijacked"}))
            .await;
        reply.assert_error(403, "FORBIDDEN");
        let reply = as_client(&srv, who).delete(&path).await;
        reply.assert_error(403, "FORBIDDEN");
    }
    srv.client()
        .patch(&path, json!({"title": "Hijacked"}))
        .await
        .assert_error(401, "UNAUTHORIZED");
    srv.client()
        .delete(&path)
        .await
        .assert_error(401, "UNAUTHORIZED");

    // The course is as it was, and still listed.
    assert_eq!(
        get_course(&srv, &stranger, id_of(&course)).await.data(),
        course
    );
    assert_eq!(
        list_ids(&as_client(&srv, &stranger), &api("/courses")).await,
        vec![id_of(&course).to_owned()]
    );

    // Unknown and malformed ids are NOT_FOUND, for the instructor role as for anyone.
    for id in [UNKNOWN_ID, "nope"] {
        let unknown = api(&format!("/courses/{id}"));
        let client = as_client(&srv, &other_teacher);
        client
            .patch(&unknown, json!({"title": "X"}))
            .await
            .assert_error(404, "NOT_FOUND");
        client.delete(&unknown).await.assert_error(404, "NOT_FOUND");
    }
}

async fn a_failed_patch_leaves_the_course_unchanged(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let path = api(&format!("/courses/{}", id_of(&course)));
    let client = as_client(&srv, &teacher);
    let cases = [
        (json!({"title": ""}), "title"),
        (json!({"title": "   "}), "title"),
        (json!({"title": "t".repeat(201)}), "title"),
        (json!({"title": 7}), "title"),
        (
            json!({"title": "Valid title", "description": "d".repeat(10_001)}),
            "description",
        ),
        (
            json!({"title": "", "description": "A valid description"}),
            "title",
        ),
        (json!({"description": false}), "description"),
    ];
    for (body, field) in cases {
        let reply = client.patch(&path, body.clone()).await;
        reply.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(reply.field(), field, "for {body}");
        assert_eq!(
            get_course(&srv, &teacher, id_of(&course)).await.data(),
            course,
            "after {body}"
        );
    }
    let raw = client
        .send(
            client
                .request(reqwest::Method::PATCH, &path)
                .header("content-type", "application/json")
                .body("{\"title\""),
        )
        .await;
    raw.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(raw.field(), "body");
    assert_eq!(
        get_course(&srv, &teacher, id_of(&course)).await.data(),
        course
    );
}

async fn a_deleted_course_is_gone_everywhere(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let kept = create_course(&srv, &teacher, "Kept").await;
    let student = srv.register("student").await;
    srv.enroll(&student, &course).await;
    srv.enroll(&student, &kept).await;
    let session = as_client(&srv, &teacher)
        .post(
            &api(&format!("/courses/{}/sessions", id_of(&course))),
            json!({"title": "Week 1"}),
        )
        .await;
    assert_eq!(session.status, 201, "{}", session.body);
    let session = session.data();

    let path = api(&format!("/courses/{}", id_of(&course)));
    let reply = as_client(&srv, &teacher).delete(&path).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data(), json!({}));

    // The course itself.
    for who in [&teacher, &student] {
        get_course(&srv, who, id_of(&course))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    let teacher_client = as_client(&srv, &teacher);
    teacher_client
        .patch(&path, json!({"title": "Back?"}))
        .await
        .assert_error(404, "NOT_FOUND");
    teacher_client
        .delete(&path)
        .await
        .assert_error(404, "NOT_FOUND");

    // The lists.
    let kept_only = vec![id_of(&kept).to_owned()];
    assert_eq!(
        list_ids(&as_client(&srv, &student), &api("/courses")).await,
        kept_only
    );
    assert_eq!(
        list_ids(&as_client(&srv, &student), &api("/courses?mine=true")).await,
        kept_only
    );
    assert_eq!(
        list_ids(&teacher_client, &api("/courses?mine=true")).await,
        kept_only
    );

    // What hung off it.
    let newcomer = srv.register("student").await;
    as_client(&srv, &newcomer)
        .post(&format!("{path}/enrollments"), json!({}))
        .await
        .assert_error(404, "NOT_FOUND");
    teacher_client
        .get(&format!("{path}/enrollments"))
        .await
        .assert_error(404, "NOT_FOUND");
    unenroll(&srv, &student, &course, &student.id)
        .await
        .assert_error(404, "NOT_FOUND");
    teacher_client
        .get(&format!("{path}/sessions"))
        .await
        .assert_error(404, "NOT_FOUND");
    teacher_client
        .post(&format!("{path}/sessions"), json!({"title": "Week 2"}))
        .await
        .assert_error(404, "NOT_FOUND");
    let session_path = api(&format!("/sessions/{}", id_of(&session)));
    teacher_client
        .get(&session_path)
        .await
        .assert_error(404, "NOT_FOUND");
    teacher_client
        .post(&format!("{session_path}/start"), json!({}))
        .await
        .assert_error(404, "NOT_FOUND");

    // The other course is untouched, enrollment included.
    assert_eq!(get_course(&srv, &student, id_of(&kept)).await.data(), kept);
    assert_eq!(
        enrolled_user_ids(&srv, &teacher, &kept).await,
        vec![student.id.clone()]
    );
}

async fn an_admin_may_delete_any_course(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let admin = srv.admin().await;
    let reply = as_client(&srv, &admin)
        .delete(&api(&format!("/courses/{}", id_of(&course))))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data(), json!({}));
    get_course(&srv, &teacher, id_of(&course))
        .await
        .assert_error(404, "NOT_FOUND");
    assert!(
        list_ids(&as_client(&srv, &teacher), &api("/courses"))
            .await
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// Enrollments

async fn students_enroll_themselves_once(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let path = api(&format!("/courses/{}/enrollments", id_of(&course)));
    let ada = srv.register("student").await;

    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let reply = as_client(&srv, &ada).post(&path, json!({})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let enrollment = reply.data();
    assert_keys(&enrollment, &ENROLLMENT_KEYS);
    assert_eq!(enrollment["courseId"], id_of(&course));
    assert_eq!(enrollment["userId"], ada.id.as_str());
    let at = assert_utc_time(&enrollment["createdAt"]);
    assert!(at >= before && at <= chrono::Utc::now() + chrono::Duration::seconds(1));

    // Twice is a conflict, however it is asked for.
    as_client(&srv, &ada)
        .post(&path, json!({}))
        .await
        .assert_error(409, "CONFLICT");
    as_client(&srv, &ada)
        .post(&path, json!({"userId": ada.id}))
        .await
        .assert_error(409, "CONFLICT");

    // The body is optional: no body at all enrolls the caller; naming oneself is the same.
    let bob = srv.register("student").await;
    let client = as_client(&srv, &bob);
    let reply = client
        .send(client.request(reqwest::Method::POST, &path))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.data()["userId"], bob.id.as_str());
    let carol = srv.register("student").await;
    let reply = as_client(&srv, &carol)
        .post(&path, json!({"userId": carol.id}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.data()["userId"], carol.id.as_str());

    // An instructor of another course and an admin may enroll themselves too.
    let other_teacher = srv.register("instructor").await;
    assert_eq!(
        as_client(&srv, &other_teacher)
            .post(&path, json!({}))
            .await
            .status,
        201
    );
    let admin = srv.admin().await;
    assert_eq!(
        as_client(&srv, &admin).post(&path, json!({})).await.status,
        201
    );

    // A malformed body is refused and enrolls nobody.
    let dave = srv.register("student").await;
    let reply = as_client(&srv, &dave)
        .post_raw(&path, "application/json", "{\"userId\"")
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "body");
    let reply = as_client(&srv, &dave)
        .post(&path, json!({"userId": 5}))
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "userId");

    assert_eq!(
        enrolled_user_ids(&srv, &teacher, &course).await,
        vec![
            ada.id.clone(),
            bob.id.clone(),
            carol.id.clone(),
            other_teacher.id.clone(),
            admin.id.clone()
        ]
    );
    // The listed enrollment is the one that was answered.
    let listed = as_client(&srv, &teacher).get(&path).await.data();
    assert_eq!(listed["items"][0], enrollment);
}

async fn concurrent_enrollments_of_one_student_give_one_enrollment(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let ada = srv.register("student").await;
    let path = api(&format!("/courses/{}/enrollments", id_of(&course)));
    let attempts = (0..8).map(|_| {
        let client = as_client(&srv, &ada);
        let path = path.clone();
        async move { client.post(&path, json!({})).await }
    });
    let replies = futures::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        vec![201, 409, 409, 409, 409, 409, 409, 409],
        "{replies:?}"
    );
    for reply in replies.iter().filter(|r| r.status == 409) {
        reply.assert_error(409, "CONFLICT");
    }
    assert_eq!(
        enrolled_user_ids(&srv, &teacher, &course).await,
        vec![ada.id.clone()]
    );
}

async fn the_instructor_cannot_enroll_in_their_own_course(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let path = api(&format!("/courses/{}/enrollments", id_of(&course)));
    as_client(&srv, &teacher)
        .post(&path, json!({}))
        .await
        .assert_error(409, "CONFLICT");
    enroll_other(&srv, &teacher, &course, &teacher.id)
        .await
        .assert_error(409, "CONFLICT");
    let admin = srv.admin().await;
    enroll_other(&srv, &admin, &course, &teacher.id)
        .await
        .assert_error(409, "CONFLICT");
    assert!(enrolled_user_ids(&srv, &teacher, &course).await.is_empty());
    // Their course is still theirs (through teaching, not enrollment).
    assert_eq!(
        list_ids(&as_client(&srv, &teacher), &api("/courses?mine=true")).await,
        vec![id_of(&course).to_owned()]
    );
}

async fn enrolling_someone_else_takes_the_instructor_or_an_admin(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let other_teacher = srv.register("instructor").await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let carol = srv.register("student").await;

    // A student may not enroll someone else, nor may the instructor of another course; and
    // for them an unknown user is still FORBIDDEN (they learn nothing about accounts).
    enroll_other(&srv, &ada, &course, &bob.id)
        .await
        .assert_error(403, "FORBIDDEN");
    enroll_other(&srv, &other_teacher, &course, &bob.id)
        .await
        .assert_error(403, "FORBIDDEN");
    enroll_other(&srv, &ada, &course, UNKNOWN_ID)
        .await
        .assert_error(403, "FORBIDDEN");
    srv.enroll(&ada, &course).await;
    enroll_other(&srv, &ada, &course, &bob.id)
        .await
        .assert_error(403, "FORBIDDEN");
    assert_eq!(
        enrolled_user_ids(&srv, &teacher, &course).await,
        vec![ada.id.clone()]
    );

    // The instructor may.
    let reply = enroll_other(&srv, &teacher, &course, &bob.id).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let enrollment = reply.data();
    assert_keys(&enrollment, &ENROLLMENT_KEYS);
    assert_eq!(enrollment["userId"], bob.id.as_str());
    assert_eq!(enrollment["courseId"], id_of(&course));
    enroll_other(&srv, &teacher, &course, &bob.id)
        .await
        .assert_error(409, "CONFLICT");

    // So may an admin, of any course.
    let admin = srv.admin().await;
    let reply = enroll_other(&srv, &admin, &course, &carol.id).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.data()["userId"], carol.id.as_str());
    enroll_other(&srv, &admin, &course, &ada.id)
        .await
        .assert_error(409, "CONFLICT");

    // Enrolling someone who does not exist is NOT_FOUND for those who may enroll others;
    // a userId that is no id at all is a validation error.
    enroll_other(&srv, &teacher, &course, UNKNOWN_ID)
        .await
        .assert_error(404, "NOT_FOUND");
    enroll_other(&srv, &admin, &course, UNKNOWN_ID)
        .await
        .assert_error(404, "NOT_FOUND");
    let reply = enroll_other(&srv, &teacher, &course, "not-a-uuid").await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "userId");

    assert_eq!(
        enrolled_user_ids(&srv, &teacher, &course).await,
        vec![ada.id.clone(), bob.id.clone(), carol.id.clone()]
    );
    // The enrolled students now count as members.
    for who in [&bob, &carol] {
        let reply = as_client(&srv, who)
            .get(&api(&format!("/courses/{}/sessions", id_of(&course))))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

async fn enrolling_in_an_unknown_course_is_not_found(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let admin = srv.admin().await;
    for id in [UNKNOWN_ID, "not-a-course"] {
        let path = api(&format!("/courses/{id}/enrollments"));
        as_client(&srv, &ada)
            .post(&path, json!({}))
            .await
            .assert_error(404, "NOT_FOUND");
        as_client(&srv, &admin)
            .post(&path, json!({"userId": ada.id}))
            .await
            .assert_error(404, "NOT_FOUND");
    }
}

async fn enrollments_are_listed_oldest_first_for_the_instructor_and_admins_only(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let mut students = Vec::new();
    for _ in 0..5 {
        let student = srv.register("student").await;
        srv.enroll(&student, &course).await;
        students.push(student);
    }
    let in_order: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    let path = api(&format!("/courses/{}/enrollments", id_of(&course)));
    let user_ids = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|e| e["userId"].as_str().unwrap().to_owned())
            .collect()
    };

    let admin = srv.admin().await;
    for who in [&teacher, &admin] {
        let client = as_client(&srv, who);
        let reply = client.get(&path).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let data = reply.data();
        assert_keys(&data, &["items", "nextCursor"]);
        assert_eq!(data["nextCursor"], Value::Null);
        let items = data["items"].as_array().unwrap();
        for item in items {
            assert_keys(item, &ENROLLMENT_KEYS);
            assert_eq!(item["courseId"], id_of(&course));
        }
        assert_eq!(user_ids(items), in_order, "oldest first");

        let pages = walk(&client, &path, 2).await;
        assert_eq!(sizes(&pages), vec![2, 2, 1]);
        assert_eq!(user_ids(&pages.concat()), in_order);
    }

    // An enrollment made while walking appears at the end of the walk.
    let client = as_client(&srv, &teacher);
    let first = client.get(&format!("{path}?limit=2")).await.data();
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();
    let late = srv.register("student").await;
    srv.enroll(&late, &course).await;
    let rest = walk_from(&client, &path, 2, Some(cursor)).await;
    let mut expected = in_order[2..].to_vec();
    expected.push(late.id.clone());
    assert_eq!(user_ids(&rest.concat()), expected);

    // Nobody else may see who is enrolled: not an enrolled student, not an outsider, not the
    // instructor of another course.
    let outsider = srv.register("student").await;
    let other_teacher = srv.register("instructor").await;
    for who in [&students[0], &outsider, &other_teacher] {
        as_client(&srv, who)
            .get(&path)
            .await
            .assert_error(403, "FORBIDDEN");
    }
    for id in [UNKNOWN_ID, "x"] {
        as_client(&srv, &admin)
            .get(&api(&format!("/courses/{id}/enrollments")))
            .await
            .assert_error(404, "NOT_FOUND");
    }
}

async fn a_student_may_leave_a_course_and_come_back(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    srv.enroll(&ada, &course).await;
    srv.enroll(&bob, &course).await;
    let sessions = api(&format!("/courses/{}/sessions", id_of(&course)));
    assert_eq!(as_client(&srv, &ada).get(&sessions).await.status, 200);

    let reply = unenroll(&srv, &ada, &course, &ada.id).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data(), json!({}));
    assert_eq!(
        enrolled_user_ids(&srv, &teacher, &course).await,
        vec![bob.id.clone()]
    );
    // No longer a member.
    as_client(&srv, &ada)
        .get(&sessions)
        .await
        .assert_error(403, "FORBIDDEN");
    // Leaving again: there is no such enrollment.
    unenroll(&srv, &ada, &course, &ada.id)
        .await
        .assert_error(404, "NOT_FOUND");

    // Coming back is a fresh enrollment, listed after those who stayed.
    srv.enroll(&ada, &course).await;
    assert_eq!(
        enrolled_user_ids(&srv, &teacher, &course).await,
        vec![bob.id.clone(), ada.id.clone()]
    );
    assert_eq!(as_client(&srv, &ada).get(&sessions).await.status, 200);
}

async fn removing_enrollments_takes_self_the_instructor_or_an_admin(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let other_teacher = srv.register("instructor").await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let carol = srv.register("student").await;
    let outsider = srv.register("student").await;
    for who in [&ada, &bob, &carol] {
        srv.enroll(who, &course).await;
    }

    // A fellow student, an outsider and another course's instructor may not remove anyone.
    for who in [&ada, &outsider, &other_teacher] {
        unenroll(&srv, who, &course, &bob.id)
            .await
            .assert_error(403, "FORBIDDEN");
    }
    assert_eq!(
        enrolled_user_ids(&srv, &teacher, &course).await,
        vec![ada.id.clone(), bob.id.clone(), carol.id.clone()]
    );

    // The instructor may.
    let reply = unenroll(&srv, &teacher, &course, &bob.id).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data(), json!({}));
    // An admin may.
    let admin = srv.admin().await;
    let reply = unenroll(&srv, &admin, &course, &carol.id).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data(), json!({}));
    assert_eq!(
        enrolled_user_ids(&srv, &teacher, &course).await,
        vec![ada.id.clone()]
    );

    // Removing someone who is not enrolled (or does not exist) is NOT_FOUND.
    unenroll(&srv, &teacher, &course, &bob.id)
        .await
        .assert_error(404, "NOT_FOUND");
    unenroll(&srv, &teacher, &course, &outsider.id)
        .await
        .assert_error(404, "NOT_FOUND");
    unenroll(&srv, &admin, &course, UNKNOWN_ID)
        .await
        .assert_error(404, "NOT_FOUND");
    unenroll(&srv, &teacher, &course, "not-a-user")
        .await
        .assert_error(404, "NOT_FOUND");
    unenroll(&srv, &teacher, &course, &teacher.id)
        .await
        .assert_error(404, "NOT_FOUND");
    // Unknown and malformed courses are NOT_FOUND.
    for id in [UNKNOWN_ID, "not-a-course"] {
        as_client(&srv, &ada)
            .delete(&api(&format!("/courses/{id}/enrollments/{}", ada.id)))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    assert_eq!(
        enrolled_user_ids(&srv, &teacher, &course).await,
        vec![ada.id.clone()]
    );
}

async fn course_endpoints_require_a_token(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let student = srv.register("student").await;
    srv.enroll(&student, &course).await;
    let course_path = api(&format!("/courses/{}", id_of(&course)));
    let enrollments = format!("{course_path}/enrollments");
    let one_enrollment = format!("{enrollments}/{}", student.id);
    for client in [srv.client(), srv.client().bearer("not.a.token")] {
        client
            .get(&api("/courses"))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .get(&api("/courses?mine=true"))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .post(&api("/courses"), json!({"title": "T"}))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .get(&course_path)
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .patch(&course_path, json!({"title": "T"}))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .delete(&course_path)
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .post(&enrollments, json!({}))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .get(&enrollments)
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .delete(&one_enrollment)
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    // Nothing changed.
    assert_eq!(
        get_course(&srv, &teacher, id_of(&course)).await.data(),
        course
    );
    assert_eq!(
        enrolled_user_ids(&srv, &teacher, &course).await,
        vec![student.id.clone()]
    );
}

async fn unsupported_methods_on_course_paths_are_405(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let client = as_client(&srv, &teacher);
    let course_path = api(&format!("/courses/{}", id_of(&course)));
    let cases = [
        (reqwest::Method::PUT, course_path.clone()),
        (reqwest::Method::POST, course_path.clone()),
        (reqwest::Method::DELETE, api("/courses")),
        (reqwest::Method::PATCH, format!("{course_path}/enrollments")),
    ];
    for (method, path) in cases {
        let reply = client
            .send(
                client
                    .request(method.clone(), &path)
                    .header("content-type", "application/json")
                    .body("{}"),
            )
            .await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text);
        reply.assert_error(405, "METHOD_NOT_ALLOWED");
    }
    assert_eq!(
        get_course(&srv, &teacher, id_of(&course)).await.data(),
        course
    );
}
