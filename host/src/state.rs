//! What every handler can reach.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use socketioxide::SocketIo;

use crate::{
    config::Config,
    service::{
        auth::AuthService,
        chat::ChatService,
        courses::CourseService,
        files::{FileService, resumable::ResumableUploads},
        ice::IceService,
        plugins::PluginService,
        sessions::SessionService,
    },
    store::Store,
};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub auth: Arc<AuthService>,
    pub courses: Arc<CourseService>,
    pub sessions: Arc<SessionService>,
    pub chat: Arc<ChatService>,
    pub files: Arc<FileService>,
    pub resumable: Arc<ResumableUploads>,
    pub policy: Arc<lyceum_plugin_runtime::PolicyEngine>,
    pub plugins: Arc<PluginService>,
    pub ice: Arc<IceService>,
    pub io: SocketIo,
    pub metrics: PrometheusHandle,
}
