// The config loader: upstream-spec §6 (the version-2 file), §3.1.1 (pg_notify options),
// §3.2 (socket), §9 (producers) and DESIGN §7-§8 (extensions, `file:line:col:` errors).

#include "dispatcherd/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace dispatcherd {
namespace {

namespace fs = std::filesystem;

fs::path source_dir() {
  const char* dir = std::getenv("DISPATCHERD_SOURCE_DIR");
  // CTest sets the variable; when run by hand, fall back to this file's location.
  return dir ? fs::path(dir) : fs::path(__FILE__).parent_path().parent_path().parent_path();
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

Config load_ok(const std::string& text) {
  Result<Config> r = load_config_text(text, "x.yml");
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : Config{};
}

std::string load_err(const std::string& text) {
  Result<Config> r = load_config_text(text, "x.yml");
  EXPECT_FALSE(r.ok()) << "loaded, but an error was expected";
  return r.ok() ? "" : r.error().message;
}

const char* const kPg = "version: 2\nbrokers:\n  pg_notify:\n    config: {conninfo: dbname=x}\n";

TEST(Config, Spec6_1_VersionMustBe2) {
  EXPECT_EQ(load_err("version: 3\n"),
            "x.yml:1:10: version must be 2, got integer 3 (Current config version is 2, config "
            "version must match this)");
  load_ok("version: 2\n");
}

TEST(Config, Spec6_1_VersionIsMandatory) {
  EXPECT_EQ(load_err("service: {}\n"),
            "x.yml:1:1: missing required key 'version' (Current config version is 2, config "
            "version must match this)");
}

TEST(Config, Spec6_1_VersionAsStringIsRejected) {
  EXPECT_NE(load_err("version: '2'\n").find("got string '2'"), std::string::npos);
}

TEST(Config, Spec6_1_TopLevelMustBeMapping) {
  EXPECT_EQ(load_err("[1, 2]\n"), "x.yml:1:1: the config must be a mapping, got a list");
}

TEST(Config, Spec6_1_UnknownTopLevelKeysAreIgnoredWithWarning) {
  Config c = load_ok("version: 2\nmy_app_settings:\n  anything: [1, 2]\n");
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_EQ(c.warnings[0], "x.yml:2:1: warning: unknown top-level key 'my_app_settings' ignored");
}

TEST(Config, Spec6_1_UnknownKeysInSectionsAreNamed) {
  EXPECT_EQ(load_err("version: 2\nservice:\n  pool_kwargs:\n    min_workerz: 1\n"),
            "x.yml:4:5: unknown key 'min_workerz' in service.pool_kwargs");
}

TEST(Config, Spec6_1_MissingSectionsDefault) {
  Config c = load_ok("version: 2\n");
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_FALSE(c.pg_notify.enabled);
  EXPECT_FALSE(c.socket.enabled);
  EXPECT_TRUE(c.broker_order.empty());
  EXPECT_FALSE(c.producers.scheduled_enabled || c.producers.on_start_enabled ||
               c.producers.control_enabled);
  EXPECT_FALSE(c.publish.default_broker || c.publish.default_control_broker);
  EXPECT_EQ(c.worker.idle_timeout, 0);
  EXPECT_EQ(c.path, "x.yml");
}

TEST(Config, Spec6_1_NullSectionsCountAsEmpty) {
  Config c = load_ok("version: 2\nservice:\n  pool_kwargs:\nproducers:\nworker:\n");
  EXPECT_EQ(c.pool.min_workers, 1);
}

TEST(Config, Spec6_2_PoolDefaults) {
  Config c = load_ok("version: 2\nservice:\n  pool_kwargs: {}\n");
  EXPECT_EQ(c.pool.min_workers, 1);
  EXPECT_FALSE(c.pool.max_workers);
  EXPECT_EQ(c.pool.scaledown_wait, 15.0);
  EXPECT_EQ(c.pool.scaledown_interval, 15.0);
  EXPECT_EQ(c.pool.worker_stop_wait, 30.0);
  EXPECT_EQ(c.pool.worker_removal_wait, 30.0);
  EXPECT_EQ(c.pool.worker_max_lifetime_seconds, 14400.0);
}

TEST(Config, Spec6_2_PoolValues) {
  Config c = load_ok(
      "version: 2\nservice:\n  pool_kwargs:\n    min_workers: 0\n    max_workers: 4\n"
      "    scaledown_wait: 0.5\n    scaledown_interval: 2\n    worker_stop_wait: 1\n"
      "    worker_removal_wait: 0\n    worker_max_lifetime_seconds: null\n");
  EXPECT_EQ(c.pool.min_workers, 0);
  EXPECT_EQ(c.pool.max_workers, 4);
  EXPECT_EQ(c.pool.scaledown_wait, 0.5);
  EXPECT_EQ(c.pool.scaledown_interval, 2.0);
  EXPECT_EQ(c.pool.worker_stop_wait, 1.0);
  EXPECT_EQ(c.pool.worker_removal_wait, 0.0);
  EXPECT_FALSE(c.pool.worker_max_lifetime_seconds);
}

TEST(Config, Spec6_2_MaxWorkersNullStaysUnset) {
  Config c = load_ok("version: 2\nservice:\n  pool_kwargs:\n    max_workers: null\n");
  EXPECT_FALSE(c.pool.max_workers);
}

TEST(Config, Spec7_3_MinOverMaxLoadsWithWarning) {
  Config c = load_ok("version: 2\nservice:\n  pool_kwargs: {min_workers: 5, max_workers: 2}\n");
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_NE(c.warnings[0].find("min_workers wins"), std::string::npos);
}

TEST(Config, Spec6_2_TypesAreChecked) {
  EXPECT_EQ(load_err("version: 2\nservice:\n  pool_kwargs:\n    min_workers: abc\n"),
            "x.yml:4:18: service.pool_kwargs.min_workers must be an integer, got string 'abc'");
  EXPECT_EQ(load_err("version: 2\nservice:\n  pool_kwargs:\n    min_workers: 1.0\n"),
            "x.yml:4:18: service.pool_kwargs.min_workers must be an integer, got float 1.0");
  // Bools are not numbers, though Python would let True pass as 1.
  EXPECT_EQ(load_err("version: 2\nservice:\n  pool_kwargs:\n    scaledown_wait: true\n"),
            "x.yml:4:21: service.pool_kwargs.scaledown_wait must be a number, got boolean true");
  // A null where none is allowed is reported at its key.
  EXPECT_EQ(load_err("version: 2\nservice:\n  pool_kwargs:\n    min_workers:\n"),
            "x.yml:4:5: service.pool_kwargs.min_workers must be an integer, got null");
}

TEST(Config, Spec6_1_ScalarsResolveLikePyYaml) {
  // YAML 1.1 (PyYAML safe_load): underscores, hex and leading-zero octal are ints;
  // a float needs a dot, and its exponent a sign, so 1e3 is a string.
  Config c = load_ok(
      "version: 2\nservice:\n  pool_kwargs:\n    min_workers: 0x10\n    max_workers: 1_000\n"
      "    scaledown_wait: 1.5e+1\n    worker_stop_wait: 010\n");
  EXPECT_EQ(c.pool.min_workers, 16);
  EXPECT_EQ(c.pool.max_workers, 1000);
  EXPECT_EQ(c.pool.scaledown_wait, 15.0);
  EXPECT_EQ(c.pool.worker_stop_wait, 8.0);
  EXPECT_NE(load_err("version: 2\nservice:\n  pool_kwargs:\n    scaledown_wait: 1e3\n")
                .find("must be a number, got string '1e3'"),
            std::string::npos);
}

TEST(Config, Spec6_2_MainDefaultsAndValues) {
  Config d = load_ok("version: 2\n");
  EXPECT_FALSE(d.main.node_id);
  EXPECT_EQ(d.main.chunk_message_timeout_seconds, 1800.0);
  Config c = load_ok(
      "version: 2\nservice:\n  main_kwargs: {node_id: n1, chunk_message_timeout_seconds: 5}\n");
  EXPECT_EQ(c.main.node_id, "n1");
  EXPECT_EQ(c.main.chunk_message_timeout_seconds, 5.0);
}

TEST(Config, Spec6_2_MetricsPresenceEnables) {
  EXPECT_FALSE(load_ok("version: 2\n").metrics.enabled);
  EXPECT_FALSE(load_ok("version: 2\nservice:\n  metrics_kwargs: null\n").metrics.enabled);
  Config e = load_ok("version: 2\nservice:\n  metrics_kwargs: {}\n");
  EXPECT_TRUE(e.metrics.enabled);
  EXPECT_EQ(e.metrics.host, "localhost");
  EXPECT_EQ(e.metrics.port, 8070);
  Config c = load_ok("version: 2\nservice:\n  metrics_kwargs: {host: 0.0.0.0, port: 0}\n");
  EXPECT_EQ(c.metrics.host, "0.0.0.0");
  EXPECT_EQ(c.metrics.port, 0);
}

TEST(Config, Spec6_2_PythonOnlyKeysLoadWithWarnings) {
  Config c = load_ok(
      "version: 2\n"
      "service:\n"
      "  pool_kwargs: {results_read_timeout: 3}\n"
      "  process_manager_cls: ForkServerManager\n"
      "  process_manager_kwargs: {preload_modules: [myapp.tasks]}\n"
      "brokers:\n"
      "  pg_notify:\n"
      "    config: {conninfo: dbname=x}\n"
      "    async_connection_factory: myapp.aconn\n"
      "    sync_connection_factory: myapp.conn\n"
      "worker:\n"
      "  worker_cls: myapp.Worker\n");
  std::vector<std::string> keys = {"results_read_timeout",    "process_manager_cls",
                                   "preload_modules",         "async_connection_factory",
                                   "sync_connection_factory", "worker_cls"};
  ASSERT_EQ(c.warnings.size(), keys.size());
  for (const std::string& key : keys) {
    bool found = false;
    for (const std::string& w : c.warnings)
      found =
          found || (w.find(key) != std::string::npos && w.find(": warning: ") != std::string::npos);
    EXPECT_TRUE(found) << key;
  }
  EXPECT_EQ(c.warnings[0].rfind("x.yml:3:17: warning: service.pool_kwargs.results_read_timeout", 0),
            0u)
      << c.warnings[0];
}

TEST(Config, Spec3_1_1_SelfCheckDefaults) {
  Config c = load_ok(kPg);
  EXPECT_TRUE(c.pg_notify.enabled);
  EXPECT_EQ(c.pg_notify.conninfo, "dbname=x");
  EXPECT_TRUE(c.pg_notify.channels.empty());
  EXPECT_FALSE(c.pg_notify.default_publish_channel);
  EXPECT_EQ(c.pg_notify.max_connection_idle_seconds, 30.0);
  EXPECT_EQ(c.pg_notify.max_self_check_message_age_seconds, 2.0);
  EXPECT_EQ(c.broker_order, std::vector<std::string>{"pg_notify"});
}

TEST(Config, Spec3_1_1_IdleNullForcesAgeNull) {
  Config c = load_ok(std::string(kPg) +
                     "    max_connection_idle_seconds: null\n"
                     "    max_self_check_message_age_seconds: 100\n");
  EXPECT_FALSE(c.pg_notify.max_connection_idle_seconds);
  EXPECT_FALSE(c.pg_notify.max_self_check_message_age_seconds);
}

TEST(Config, Spec3_1_1_AgeEqualToIdleIsAllowed) {
  Config c = load_ok(std::string(kPg) +
                     "    max_connection_idle_seconds: 3\n"
                     "    max_self_check_message_age_seconds: 3\n");
  EXPECT_EQ(c.pg_notify.max_self_check_message_age_seconds, 3.0);
}

TEST(Config, Spec3_1_1_AgeOverIdleIsRejected) {
  EXPECT_EQ(load_err(std::string(kPg) + "    max_connection_idle_seconds: 1\n"
                                        "    max_self_check_message_age_seconds: 3\n"),
            "x.yml:6:41: max_self_check_message_age_seconds must be smaller than "
            "max_connection_idle_seconds (3 > 1)");
}

TEST(Config, Spec3_1_1_ChannelsAreValidated) {
  Config c = load_ok(std::string(kPg) + "    channels: [a, b]\n    default_publish_channel: b\n");
  EXPECT_EQ(c.pg_notify.channels, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.pg_notify.default_publish_channel, "b");
  EXPECT_EQ(load_err(std::string(kPg) + "    channels:\n      - " + std::string(64, 'a') + "\n"),
            "x.yml:6:9: invalid channel name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…' in "
            "brokers.pg_notify.channels: Channel name is too long chars=64 (at most 63 bytes)");
}

TEST(Config, Spec3_1_1_ConfigKeysBecomeConninfoParameters) {
  Config c = load_ok(
      "version: 2\nbrokers:\n  pg_notify:\n    config:\n      conninfo: dbname=x\n"
      "      application_name: my app\n      port: 5432\n      password: it's\\\n"
      "      autocommit: true\n      sslmode: null\n");
  EXPECT_EQ(c.pg_notify.conninfo,
            "dbname=x application_name='my app' port=5432 password=it\\'s\\\\");
  // Keys override what the conninfo string says, like psycopg's make_conninfo.
  Config o = load_ok(
      "version: 2\nbrokers:\n  pg_notify:\n    config: {conninfo: 'dbname=x port=1', port: 2}\n");
  EXPECT_EQ(o.pg_notify.conninfo, "dbname=x port=2");
}

TEST(Config, Spec3_1_1_ConninfoUriIsAccepted) {
  // Alone, the conninfo is passed on verbatim (as psycopg does); with extra keys it is
  // parsed by libpq and rebuilt as key=value pairs.
  Config v = load_ok(
      "version: 2\nbrokers:\n  pg_notify:\n    config: {conninfo: 'postgresql://u@h:5/db'}\n");
  EXPECT_EQ(v.pg_notify.conninfo, "postgresql://u@h:5/db");
  Config c = load_ok(
      "version: 2\nbrokers:\n  pg_notify:\n"
      "    config: {conninfo: 'postgresql://u@h:5/db', application_name: app}\n");
  for (const char* part : {"user=u", "dbname=db", "host=h", "port=5", "application_name=app"})
    EXPECT_NE(c.pg_notify.conninfo.find(part), std::string::npos) << c.pg_notify.conninfo;
  EXPECT_EQ(c.pg_notify.conninfo.find("postgresql:"), std::string::npos);
}

TEST(Config, Spec3_1_1_ConfigIsRequired) {
  EXPECT_EQ(load_err("version: 2\nbrokers:\n  pg_notify:\n    channels: [a]\n"),
            "x.yml:3:3: brokers.pg_notify: Must specify either config or "
            "async_connection_factory");
  EXPECT_NE(load_err("version: 2\nbrokers:\n  pg_notify:\n    async_connection_factory: m.f\n")
                .find("the C++ service cannot call"),
            std::string::npos);
}

TEST(Config, Spec3_2_SocketPathIsMadeAbsolute) {
  Config c = load_ok("version: 2\nbrokers:\n  socket:\n    socket_path: rel/d.sock\n");
  EXPECT_TRUE(c.socket.enabled);
  EXPECT_EQ(c.socket.socket_path, (fs::current_path() / "rel/d.sock").string());
  Config a = load_ok("version: 2\nbrokers:\n  socket: {socket_path: /run/d.sock}\n");
  EXPECT_EQ(a.socket.socket_path, "/run/d.sock");
}

TEST(Config, Spec6_2_BrokerOrderFollowsTheFile) {
  Config c = load_ok(
      "version: 2\nbrokers:\n  socket: {socket_path: /tmp/s}\n"
      "  pg_notify: {config: {conninfo: dbname=x}}\n");
  EXPECT_EQ(c.broker_order, (std::vector<std::string>{"socket", "pg_notify"}));
}

TEST(Config, Spec9_ProducersKeepOrderAndMessageKeys) {
  Config c = load_ok(
      "version: 2\nproducers:\n"
      "  ControlProducer: {}\n"
      "  OnStartProducer:\n    task_list:\n      a.b: {timeout: 1}\n      c.d:\n"
      "  ScheduledProducer:\n    task_schedule:\n"
      "      s.one: {schedule: 2.5, queue: q, args: [1, x], on_duplicate: discard}\n");
  EXPECT_EQ(c.producers.order,
            (std::vector<std::string>{"ControlProducer", "OnStartProducer", "ScheduledProducer"}));
  EXPECT_TRUE(c.producers.control_enabled);
  ASSERT_EQ(c.producers.on_start.size(), 2u);
  EXPECT_EQ(c.producers.on_start[0].task, "a.b");
  EXPECT_EQ(c.producers.on_start[0].extra, nlohmann::json({{"timeout", 1}}));
  EXPECT_EQ(c.producers.on_start[1].extra, nlohmann::json::object());
  ASSERT_EQ(c.producers.schedule.size(), 1u);
  EXPECT_EQ(c.producers.schedule[0].task, "s.one");
  EXPECT_EQ(c.producers.schedule[0].schedule, 2.5);
  EXPECT_EQ(c.producers.schedule[0].extra,
            nlohmann::json::parse(R"({"queue":"q","args":[1,"x"],"on_duplicate":"discard"})"));
}

TEST(Config, Spec6_2_PublishDefaults) {
  Config c = load_ok(std::string(kPg) + "publish: {default_broker: pg_notify}\n");
  EXPECT_EQ(c.publish.default_broker, "pg_notify");
  EXPECT_TRUE(c.warnings.empty());
  Config w = load_ok("version: 2\npublish: {default_control_broker: socket}\n");
  EXPECT_EQ(w.publish.default_control_broker, "socket");
  ASSERT_EQ(w.warnings.size(), 1u);  // names a broker that is not configured
}

TEST(Config, Spec6_3_UpstreamDemoLoads) {
  fs::path file = source_dir() / "tests/configs/good/upstream_demo.yml";
  Result<Config> r = load_config(file.string());
  ASSERT_TRUE(r.ok()) << r.error().message;
  const Config& c = *r;
  EXPECT_EQ(c.path, file.lexically_normal().string());
  EXPECT_EQ(c.pool.min_workers, 1);
  EXPECT_EQ(c.pool.max_workers, 12);
  EXPECT_EQ(c.pool.scaledown_wait, 15.0);
  EXPECT_EQ(c.main.node_id, "demo-server-a");
  EXPECT_EQ(c.main.chunk_message_timeout_seconds, 5.0);
  EXPECT_TRUE(c.metrics.enabled);
  EXPECT_EQ(c.metrics.port, 8070);
  EXPECT_EQ(c.worker.idle_timeout, 3.0);
  EXPECT_EQ(c.pg_notify.conninfo,
            "dbname=dispatch_db user=dispatch password=dispatching host=localhost port=55777 "
            "application_name=dispatcher_demo_run");
  EXPECT_EQ(c.pg_notify.channels,
            (std::vector<std::string>{"test_channel", "test_channel2", "test_channel3"}));
  EXPECT_EQ(c.pg_notify.default_publish_channel, "test_channel");
  EXPECT_EQ(c.pg_notify.max_connection_idle_seconds, 5.0);
  EXPECT_EQ(c.pg_notify.max_self_check_message_age_seconds, 2.0);
  EXPECT_EQ(c.socket.socket_path, (fs::current_path() / "demo_dispatcher.sock").string());
  EXPECT_EQ(c.broker_order, (std::vector<std::string>{"pg_notify", "socket"}));
  ASSERT_EQ(c.producers.schedule.size(), 2u);
  EXPECT_EQ(c.producers.schedule[0].task, "lambda: __import__(\"time\").sleep(1)");
  EXPECT_EQ(c.producers.schedule[1].schedule, 3.0);
  ASSERT_EQ(c.producers.on_start.size(), 1u);
  EXPECT_EQ(c.producers.on_start[0].task, "lambda: print(\"This task runs on startup\")");
  EXPECT_TRUE(c.producers.control_enabled);
  EXPECT_EQ(c.publish.default_broker, "pg_notify");
  EXPECT_EQ(c.publish.default_control_broker, "socket");
  const std::string name = file.string();
  EXPECT_EQ(c.warnings,
            (std::vector<std::string>{
                name + ":10:5: warning: service.pool_kwargs.results_read_timeout only tunes the "
                       "Python results queue reader; ignored",
                name + ":22:5: warning: brokers.pg_notify.sync_connection_factory is a Python "
                       "import path; the C++ service connects with config and ignores it"}));
}

TEST(Config, Design7_ExtensionsDefaults) {
  ExtensionsConfig x = load_ok("version: 2\nextensions: {}\n").extensions;
  EXPECT_TRUE(x.task_libraries.empty());
  EXPECT_TRUE(x.tasks.empty());
  EXPECT_EQ(x.socket_mode, 0600u);
  EXPECT_FALSE(x.pg_notify_control_commands);
  EXPECT_EQ(x.log_format, "text");
  EXPECT_FALSE(x.log_level);
  EXPECT_EQ(x.max_queued_tasks, 1000000u);
}

TEST(Config, Design7_ExtensionsEveryKey) {
  Result<Config> r =
      load_config((source_dir() / "tests/configs/good/extensions_full.yml").string());
  ASSERT_TRUE(r.ok()) << r.error().message;
  const ExtensionsConfig& x = r->extensions;
  EXPECT_TRUE(r->warnings.empty());
  EXPECT_EQ(x.task_libraries,
            (std::vector<std::string>{"/usr/lib/dispatcherd/libtasks.so", "./libmore.so"}));
  ASSERT_EQ(x.tasks.size(), 2u);
  const CommandTaskConfig& echo = x.tasks.at("echo");
  EXPECT_EQ(echo.command,
            (std::vector<std::string>{"/bin/echo", "{message}", "--count={count}", "{{literal}}"}));
  EXPECT_EQ(echo.cwd, "/tmp");
  EXPECT_EQ(echo.env,
            (std::map<std::string, std::string>{{"GREETING", "hello"}, {"PORT", "8080"}}));
  EXPECT_EQ(echo.patterns.at("count"), "^[0-9]{1,3}$");
  EXPECT_EQ(echo.output_tail_bytes, 512u);
  EXPECT_EQ(x.tasks.at("noop").output_tail_bytes, 4096u);
  EXPECT_EQ(x.cancel_grace_seconds, 2.5);
  EXPECT_EQ(x.shutdown_timeout_seconds, 20.0);
  EXPECT_EQ(x.max_queued_tasks, 5000u);
  EXPECT_EQ(x.max_delayed_tasks, 600u);
  EXPECT_EQ(x.max_blocked_tasks, 700u);
  EXPECT_EQ(x.max_message_bytes, 1048576u);
  EXPECT_EQ(x.max_partial_messages, 10u);
  EXPECT_EQ(x.max_partial_bytes, 2097152u);
  EXPECT_EQ(x.max_tasks_per_worker, 100u);
  EXPECT_EQ(x.max_worker_rss_mb, 512u);
  EXPECT_EQ(x.max_socket_clients, 8u);
  EXPECT_EQ(x.max_socket_line_bytes, 65536u);
  EXPECT_EQ(x.socket_mode, 0660u);
  EXPECT_EQ(x.pg_notify_control_commands, (std::vector<std::string>{"alive", "running"}));
  EXPECT_EQ(x.log_format, "json");
  EXPECT_EQ(x.log_level, "DEBUG");
  EXPECT_TRUE(x.schedule_advisory_lock);
}

TEST(Config, Design7_SocketModeForms) {
  auto mode = [](const std::string& v) {
    return load_ok("version: 2\nextensions: {socket_mode: " + v + "}\n").extensions.socket_mode;
  };
  EXPECT_EQ(mode("0600"), 0600u);    // plain: octal under YAML 1.1
  EXPECT_EQ(mode("'0660'"), 0660u);  // quoted: read like chmod
  EXPECT_EQ(mode("'600'"), 0600u);
  EXPECT_EQ(mode("384"), 0600u);
  EXPECT_NE(load_err("version: 2\nextensions: {socket_mode: 600}\n").find("write 0600"),
            std::string::npos);
}

TEST(Config, Design7_CommandPlaceholders) {
  Config c = load_ok(
      "version: 2\nextensions:\n  tasks:\n    t:\n"
      "      command: [prog, '{{x}}', 'a{b}c{b}', '{_1}']\n      patterns: {b: '\\d+', _1: x}\n");
  EXPECT_EQ(c.extensions.tasks.at("t").patterns.size(), 2u);
  EXPECT_EQ(load_err("version: 2\nextensions:\n  tasks:\n    t:\n      command: [p, '{}']\n"),
            "x.yml:5:20: extensions.tasks.t.command[1]: placeholder '{}' is not a name (letters, "
            "digits and _, not starting with a digit; write {{ and }} for literal braces)");
}

TEST(Config, Design8_BadConfigsFolder) {
  // Each bad/NAME.yml is loaded as "NAME.yml" and must fail with the one line in NAME.expected.
  fs::path dir = source_dir() / "tests/configs/bad";
  int checked = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".yml") continue;
    fs::path expected_file = e.path();
    expected_file.replace_extension(".expected");
    ASSERT_TRUE(fs::exists(expected_file)) << expected_file;
    std::string expected = read_file(expected_file);
    while (!expected.empty() && expected.back() == '\n') expected.pop_back();
    EXPECT_EQ(expected.find('\n'), std::string::npos) << expected_file << " must be one line";
    Result<Config> r = load_config_text(read_file(e.path()), e.path().filename().string());
    if (r.ok()) {
      ADD_FAILURE() << e.path() << " loaded, expected: " << expected;
    } else {
      EXPECT_EQ(r.error().message, expected) << e.path();
    }
    // The service's deferred load fails the same way, at load or at resolve_conninfo().
    Result<Config> d = load_config_text(read_file(e.path()), e.path().filename().string(),
                                        ConninfoCheck::Deferred);
    if (d.ok()) {
      ASSERT_TRUE(d->pg_notify.conninfo_source.pending) << e.path();
      Status st = resolve_conninfo(d->pg_notify);
      ASSERT_FALSE(st.ok()) << e.path() << " resolved, expected: " << expected;
      EXPECT_EQ(st.error().message, expected) << e.path();
    } else {
      EXPECT_EQ(d.error().message, expected) << e.path();
    }
    ++checked;
  }
  EXPECT_GE(checked, 15);
}

TEST(Config, Design8_GoodConfigsFolderLoads) {
  for (const fs::directory_entry& e : fs::directory_iterator(source_dir() / "tests/configs/good")) {
    if (e.path().extension() != ".yml") continue;
    Result<Config> r = load_config(e.path().string());
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    // Deferred, the same conninfo comes out of resolve_conninfo().
    Result<Config> d = load_config(e.path().string(), ConninfoCheck::Deferred);
    ASSERT_TRUE(d.ok()) << d.error().message;
    ASSERT_EQ(d->pg_notify.conninfo_source.pending, d->pg_notify.enabled) << e.path();
    if (!d->pg_notify.enabled) continue;
    EXPECT_TRUE(d->pg_notify.conninfo.empty());
    ASSERT_TRUE(resolve_conninfo(d->pg_notify).ok()) << e.path();
    EXPECT_EQ(d->pg_notify.conninfo, r->pg_notify.conninfo) << e.path();
    EXPECT_FALSE(d->pg_notify.conninfo_source.pending);
  }
}

TEST(Config, Design8_ConninfoIsCheckedLastEitherWay) {
  // A bad conninfo and a bad self-check bound: both loads report the bound, which needs no
  // libpq; the conninfo is reported once the rest is right.
  const std::string both =
      "version: 2\nbrokers:\n  pg_notify:\n    config: {conninfo: \"dbname='x\"}\n"
      "    max_self_check_message_age_seconds: 99\n";
  const std::string bound = load_err(both);
  EXPECT_NE(bound.find("max_self_check_message_age_seconds must be smaller"), std::string::npos)
      << bound;
  Result<Config> d = load_config_text(both, "x.yml", ConninfoCheck::Deferred);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().message, bound);
}

TEST(Config, Design8_DeferredConninfoAssemblesLikeTheLoad) {
  // Parameters override the conninfo's own, in file order, as at load.
  const std::string text =
      "version: 2\nbrokers:\n  pg_notify:\n"
      "    config: {conninfo: 'dbname=x port=1', port: 2, sslmode: null, autocommit: true}\n";
  Result<Config> d = load_config_text(text, "x.yml", ConninfoCheck::Deferred);
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_TRUE(resolve_conninfo(d->pg_notify).ok());
  EXPECT_EQ(d->pg_notify.conninfo, "dbname=x port=2");
  // A type error needs no libpq: the deferred load still reports it at once.
  Result<Config> t =
      load_config_text("version: 2\nbrokers:\n  pg_notify:\n    config: {conninfo: [a]}\n", "x.yml",
                       ConninfoCheck::Deferred);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().message,
            load_err("version: 2\nbrokers:\n  pg_notify:\n    config: {conninfo: [a]}\n"));
}

TEST(Config, Design8_MissingFile) {
  Result<Config> r = load_config("/nonexistent/dispatcher.yml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "/nonexistent/dispatcher.yml: cannot read config file: No such file or directory");
}

TEST(Config, Design8_DuplicateKeysAreErrors) {
  EXPECT_EQ(load_err("version: 2\nversion: 2\n"),
            "x.yml:2:1: duplicate key 'version' (first defined at line 1)");
}

TEST(Config, Design8_YamlSyntaxErrorsUsePositions) {
  EXPECT_EQ(load_err("version: 2\nservice: [a, b\n"), "x.yml:3:1: end of sequence flow not found");
  EXPECT_EQ(load_err("version: 2\nservice:\n\tpool_kwargs: {}\n"),
            "x.yml:3:13: illegal map value (tabs cannot indent YAML; use spaces)");
}

TEST(Config, Design8_AliasExpansionIsBounded) {
  // A "billion laughs" document: tiny text, 10^9 nodes once aliases are expanded.
  std::string text = "version: 2\na: &a [x, x, x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char ch = 'b'; ch <= 'j'; ++ch, ++prev) {
    text += std::string(1, ch) + ": &" + ch + " [";
    for (int i = 0; i < 10; ++i) text += std::string(i ? ", " : "") + "*" + prev;
    text += "]\n";
  }
  EXPECT_NE(load_err(text).find("config too large"), std::string::npos);
}

TEST(Config, Design8_DeepNestingIsAnErrorNotACrash) {
  EXPECT_EQ(load_err("version: 2\nx: " + std::string(100000, '[') + "\n"),
            "x.yml:3:1: nesting too deep for the YAML parser");
  EXPECT_EQ(load_err(",version: 2\n"), "x.yml:1:1: unexpected ',' (not valid YAML here)");
}

TEST(Config, Spec5_1_ResolveConfigPath) {
  ::unsetenv("DISPATCHERD_CONFIG_FILE");
  EXPECT_EQ(resolve_config_path(""), "dispatcher.yml");
  EXPECT_EQ(resolve_config_path("cli.yml"), "cli.yml");
  ::setenv("DISPATCHERD_CONFIG_FILE", "/etc/env.yml", 1);
  EXPECT_EQ(resolve_config_path(""), "/etc/env.yml");
  EXPECT_EQ(resolve_config_path("cli.yml"), "cli.yml");
  ::setenv("DISPATCHERD_CONFIG_FILE", "", 1);  // empty counts as unset, as upstream
  EXPECT_EQ(resolve_config_path(""), "dispatcher.yml");
  ::unsetenv("DISPATCHERD_CONFIG_FILE");
}

}  // namespace
}  // namespace dispatcherd

namespace dispatcherd {
namespace {

TEST(Config, Design6_ConninfoFromTheEnvironmentOverridesTheFile) {
  Config with_pg = load_ok(kPg);
  Config without_pg = load_ok("version: 2\n");
  ::unsetenv("DISPATCHERD_PG_CONNINFO");
  EXPECT_FALSE(apply_conninfo_override(with_pg));
  EXPECT_EQ(with_pg.pg_notify.conninfo, "dbname=x");
  ::setenv("DISPATCHERD_PG_CONNINFO", "", 1);
  EXPECT_FALSE(apply_conninfo_override(with_pg));
  ::setenv("DISPATCHERD_PG_CONNINFO", "host=db port=5433", 1);
  EXPECT_TRUE(apply_conninfo_override(with_pg));
  EXPECT_EQ(with_pg.pg_notify.conninfo, "host=db port=5433");
  EXPECT_FALSE(apply_conninfo_override(without_pg));  // no broker to point anywhere
  EXPECT_FALSE(without_pg.pg_notify.enabled);
  // With the service's deferred check the override wins too, and the file is still checked.
  Result<Config> d = load_config_text(kPg, "x.yml", ConninfoCheck::Deferred);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(apply_conninfo_override(*d));
  ASSERT_TRUE(resolve_conninfo(d->pg_notify).ok());
  EXPECT_EQ(d->pg_notify.conninfo, "host=db port=5433");
  Result<Config> bad = load_config_text(
      "version: 2\nbrokers:\n  pg_notify:\n    config: {conninfo: \"dbname='x\"}\n", "x.yml",
      ConninfoCheck::Deferred);
  ASSERT_TRUE(bad.ok());
  EXPECT_TRUE(apply_conninfo_override(*bad));
  EXPECT_FALSE(resolve_conninfo(bad->pg_notify).ok());
  ::unsetenv("DISPATCHERD_PG_CONNINFO");
}

}  // namespace
}  // namespace dispatcherd
