#pragma once
// The configuration: upstream's version-2 `dispatcher.yml` (upstream-spec §6) loaded into
// typed structs with every default of §6.2, plus our own settings under the top-level
// `extensions:` section (upstream ignores unknown top-level keys, so one file serves both).
//
// Every problem is reported as `file:line:col: message`; keys that only mean something to
// the Python service (worker_cls, process_manager_cls, ...) load with a warning.

#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dispatcherd/result.h"

namespace dispatcherd {

/// service.pool_kwargs (§6.2, §7.2-§7.3).
struct PoolConfig {
  int min_workers = 1;
  std::optional<int> max_workers;  ///< null → number of CPUs
  double scaledown_wait = 15.0;
  double scaledown_interval = 15.0;
  double worker_stop_wait = 30.0;
  double worker_removal_wait = 30.0;
  std::optional<double> worker_max_lifetime_seconds = 14400.0;  ///< null disables retirement
};

/// service.main_kwargs.
struct MainConfig {
  std::optional<std::string> node_id;  ///< null → a random uuid4 per start
  double chunk_message_timeout_seconds = 1800.0;
};

/// service.metrics_kwargs; present (even `{}`) enables the metrics endpoint.
struct MetricsConfig {
  bool enabled = false;
  std::string host = "localhost";
  int port = 8070;
};

/// brokers.pg_notify.config as written, kept for the checks that need libpq
/// (resolve_conninfo); positions are `file:line:col: ` prefixes.
struct ConninfoSource {
  /// One non-null entry (autocommit aside), in file order.
  struct Entry {
    std::string key;       ///< "conninfo" or a libpq parameter name
    std::string path;      ///< e.g. "brokers.pg_notify.config.conninfo"
    std::string value;     ///< its text
    std::string key_at;    ///< where the key is
    std::string value_at;  ///< where the value is
  };
  std::vector<Entry> entries;
  std::string path;      ///< "brokers.pg_notify.config"
  std::string at;        ///< where the mapping is
  bool pending = false;  ///< the load left the libpq checks to resolve_conninfo()
};

/// brokers.pg_notify (§3.1.1).
struct PgNotifyConfig {
  bool enabled = false;
  /// libpq conninfo assembled from `config` (its `conninfo` plus any other keys as
  /// key=value parameters); never empty when enabled, unless `conninfo_source.pending`.
  std::string conninfo;
  ConninfoSource conninfo_source;
  std::vector<std::string> channels;
  std::optional<std::string> default_publish_channel;
  std::optional<double> max_connection_idle_seconds = 30.0;        ///< null disables self-checks
  std::optional<double> max_self_check_message_age_seconds = 2.0;  ///< null when idle is null
};

/// brokers.socket (§3.2).
struct SocketConfig {
  bool enabled = false;
  std::string socket_path;  ///< made absolute against the working directory at load
};

/// One entry of producers.ScheduledProducer.task_schedule.
struct ScheduledTask {
  std::string task;
  double schedule = 0;   ///< seconds between emissions (> 0)
  nlohmann::json extra;  ///< other message keys (object), `schedule` removed
};

/// One entry of producers.OnStartProducer.task_list.
struct OnStartTask {
  std::string task;
  nlohmann::json extra;  ///< other message keys (object)
};

/// The producers: section (§9). Each `*_enabled` is true when its key is present.
struct ProducersConfig {
  bool scheduled_enabled = false;
  std::vector<ScheduledTask> schedule;
  bool on_start_enabled = false;
  std::vector<OnStartTask> on_start;
  bool control_enabled = false;
  std::vector<std::string> order;  ///< producer class names in config order
};

/// The publish: section.
struct PublishConfig {
  std::optional<std::string> default_broker;
  std::optional<std::string> default_control_broker;
};

/// worker.worker_kwargs.
struct WorkerConfig {
  double idle_timeout = 0;  ///< > 0: call the on-idle hook after this many idle seconds
};

/// extensions.tasks.<name>: a task that runs a program (DESIGN §2 "command tasks").
struct CommandTaskConfig {
  std::vector<std::string> command;  ///< argv template with {kwarg} placeholders
  std::optional<std::string> cwd;
  std::map<std::string, std::string> env;       ///< added to the inherited environment
  std::map<std::string, std::string> patterns;  ///< placeholder → ECMAScript regex to match
  std::size_t output_tail_bytes = 4096;         ///< last bytes of stdout+stderr kept for the log
};

/// extensions: everything upstream lacks. Every bound has a default.
struct ExtensionsConfig {
  std::vector<std::string> task_libraries;         ///< .so files dlopen'ed before workers
  std::map<std::string, CommandTaskConfig> tasks;  ///< command tasks by task name
  double cancel_grace_seconds = 5.0;       ///< after cancel/timeout, SIGKILL a task still running
  double shutdown_timeout_seconds = 10.0;  ///< running tasks get this long at shutdown
  std::size_t max_queued_tasks = 1000000;  ///< queue bound; overflow is dropped and counted
  std::size_t max_delayed_tasks = 100000;
  std::size_t max_blocked_tasks = 100000;
  std::size_t max_message_bytes = 16u << 20;  ///< a larger (assembled) message is refused
  std::size_t max_partial_messages = 1000;    ///< chunked messages being assembled
  std::size_t max_partial_bytes = 64u << 20;  ///< bytes held in partial messages
  std::size_t max_tasks_per_worker = 0;       ///< recycle a worker after N tasks (0 = never)
  std::size_t max_worker_rss_mb = 0;          ///< recycle a worker above this RSS (0 = never)
  std::size_t max_socket_clients = 64;
  std::size_t max_socket_line_bytes = 1u << 20;
  unsigned socket_mode = 0600;
  /// Control commands accepted over pg_notify; nullopt = all (anyone who may NOTIFY on the
  /// channels can send them, so operators may restrict this, e.g. to [alive, running]).
  std::optional<std::vector<std::string>> pg_notify_control_commands;
  std::string log_format = "text";  ///< "text" or "json"
  /// DEBUG/INFO/WARNING/ERROR/CRITICAL (stored upper-case); applied at start unless
  /// --log-level is given, and again on SIGHUP. nullopt: INFO, and SIGHUP leaves it alone.
  std::optional<std::string> log_level;
  bool schedule_advisory_lock = false;  ///< scheduled tasks run on one node of many
};

/// The whole file.
struct Config {
  std::string path;  ///< absolute path of the file it came from
  PoolConfig pool;
  MainConfig main;
  MetricsConfig metrics;
  PgNotifyConfig pg_notify;
  SocketConfig socket;
  std::vector<std::string> broker_order;  ///< "pg_notify" / "socket" in config order
  ProducersConfig producers;
  PublishConfig publish;
  WorkerConfig worker;
  ExtensionsConfig extensions;
  /// Warnings met while loading (Python-only keys and the like), already `file:line:col: `.
  std::vector<std::string> warnings;
};

/// When load_config runs libpq's checks of brokers.pg_notify.config (conninfo syntax,
/// parameter names). They load libpq, which costs a process ~10-15 ms; the service defers
/// them to the start of its pg_notify broker so that the load overlaps the workers' start.
enum class ConninfoCheck {
  AtLoad,    ///< checked and assembled now (the CLI, publishers, --check-config)
  Deferred,  ///< left to resolve_conninfo(); `pg_notify.conninfo` stays empty until then
};

/// Loads and validates a config file. The error text is `file:line:col: message`.
Result<Config> load_config(const std::string& path, ConninfoCheck check = ConninfoCheck::AtLoad);

/// Same, from text; `name` stands for the file name in messages.
Result<Config> load_config_text(const std::string& text, const std::string& name,
                                ConninfoCheck check = ConninfoCheck::AtLoad);

/// Runs the deferred libpq checks of `pg.conninfo_source` (loading libpq) and assembles
/// `pg.conninfo` from it, unless DISPATCHERD_PG_CONNINFO already set it. The error is the
/// `file:line:col: message` that load_config(..., AtLoad) would have returned.
Status resolve_conninfo(PgNotifyConfig& pg);

/// Applies DISPATCHERD_PG_CONNINFO, when set and non-empty, to brokers.pg_notify.conninfo of a
/// config that enables pg_notify, so that deployments, `make run` and `make demo` point the
/// service and dispatcherctl at a database without editing the file (whose conninfo is still
/// checked). True when it applied.
bool apply_conninfo_override(Config& config);

/// Picks the config path like upstream (§5.1): DISPATCHERD_CONFIG_FILE when `cli_path` is
/// empty (not given), else `cli_path`, else "dispatcher.yml".
std::string resolve_config_path(const std::string& cli_path);

}  // namespace dispatcherd
