// Interop with upstream (ansible/dispatcherd, Python), both ways: our dispatcherctl against
// upstream's service, upstream's dispatcherctl against ours, and upstream's publisher API
// submitting a task to ours. Upstream's own code runs unmodified from a source tree
// ($DISPATCHERD_UPSTREAM_DIR, else <build>/upstream, which `make interop` extracts); the
// psycopg 3.1 shim and the entry points next to this file make it run on Debian 12.
// Without that tree or the Python packages every test skips with the reason.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "pg_test_env.h"
#include "service_process.h"

namespace dispatcherd::testing {
namespace {

using json = nlohmann::json;

// ---- finding upstream --------------------------------------------------------------------

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

struct Upstream {
  std::string tree;     ///< upstream's source tree (holds dispatcherd/cli.py)
  std::string python;   ///< a Python 3 with psycopg, yaml and prometheus_client
  std::string scripts;  ///< tests/interop: the shim and the entry points
  std::string skip;     ///< why the tests cannot run; "" when they can

  /// The environment of upstream's processes: its tree and the shim on the path, and no
  /// __pycache__ written into the source tree.
  std::vector<std::string> env() const {
    return {"PYTHONPATH=" + scripts + ":" + tree, "PYTHONDONTWRITEBYTECODE=1"};
  }
};

int run_quietly(const std::vector<std::string>& argv);

const Upstream& upstream() {
  static const Upstream found = [] {
    Upstream u;
    u.scripts = test_path("DISPATCHERD_SOURCE_DIR") + "/tests/interop";
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("DISPATCHERD_UPSTREAM_DIR")) {
      candidates.push_back(env);
    } else {
      candidates.push_back(test_path("DISPATCHERD_BUILD_DIR") + "/upstream");
      candidates.push_back(test_path("DISPATCHERD_SOURCE_DIR") + "/build/upstream");
    }
    for (const auto& c : candidates)
      if (is_file(c + "/dispatcherd/cli.py")) {
        u.tree = c;
        break;
      }
    if (u.tree.empty()) {
      u.skip = "no upstream dispatcherd tree at " + candidates.front() +
               " (run `make interop` or set DISPATCHERD_UPSTREAM_DIR)";
      return u;
    }
    // Debian's packages live in /usr/bin/python3's path, not in a pyenv or venv python.
    const char* py = std::getenv("DISPATCHERD_PYTHON");
    u.python = py ? py : "/usr/bin/python3";
    if (run_quietly({u.python, "-c", "import psycopg, yaml, prometheus_client"}) != 0)
      u.skip = u.python +
               " lacks psycopg, yaml or prometheus_client (apt-get install python3-psycopg "
               "python3-yaml python3-prometheus-client, or set DISPATCHERD_PYTHON)";
    return u;
  }();
  return found;
}

#define REQUIRE_UPSTREAM()                                         \
  do {                                                             \
    if (!upstream().skip.empty()) GTEST_SKIP() << upstream().skip; \
    REQUIRE_PG();                                                  \
  } while (0)

// ---- running a command ---------------------------------------------------------------------

struct Output {
  int rc = -1;  ///< exit code; -1 when killed or not run
  std::string out, err;
};

/// Runs `argv` with `env` added to the environment; stdout and stderr captured separately.
/// Killed after `timeout` seconds.
Output run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
           double timeout = 60) {
  Output o;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) return o;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&o.out, &o.err};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  int open_fds = 2;
  while (open_fds > 0 && std::chrono::steady_clock::now() < deadline) {
    if (::poll(fds, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<std::size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  if (open_fds > 0) ::kill(pid, SIGKILL);
  int st = 0;
  ::waitpid(pid, &st, 0);
  o.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return o;
}

int run_quietly(const std::vector<std::string>& argv) {
  return run(argv, {}, 30).rc;
}

// ---- PyYAML's output as JSON ---------------------------------------------------------------

/// A scalar as PyYAML's resolver reads it: quoted ones are strings, plain ones may be null,
/// bool, int or float (YAML 1.1 rules, the forms yaml.dump writes).
json scalar_value(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted
  static const std::regex null_re("^(~|null|Null|NULL|)$");
  static const std::regex true_re("^(yes|Yes|YES|true|True|TRUE|on|On|ON)$");
  static const std::regex false_re("^(no|No|NO|false|False|FALSE|off|Off|OFF)$");
  static const std::regex int_re("^[-+]?(0|[1-9][0-9_]*)$");
  static const std::regex float_re(
      "^([-+]?[0-9][0-9_]*\\.[0-9_]*([eE][-+][0-9]+)?|\\.[0-9][0-9_]*([eE][-+][0-9]+)?)$");
  if (std::regex_match(s, null_re)) return nullptr;
  if (std::regex_match(s, true_re)) return true;
  if (std::regex_match(s, false_re)) return false;
  std::string digits;
  for (char c : s)
    if (c != '_') digits += c;
  if (std::regex_match(s, int_re)) return std::stoll(digits);
  if (std::regex_match(s, float_re)) return std::stod(digits);
  return s;
}

json to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& item : n) out.push_back(to_json(item));
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : n) out[kv.first.Scalar()] = to_json(kv.second);
      return out;
    }
    case YAML::NodeType::Scalar:
      return scalar_value(n);
    default:
      return nullptr;
  }
}

/// The replies a dispatcherctl printed (a YAML list); a string describing the problem when the
/// output is not one.
json parse_replies(const std::string& yaml_text) {
  try {
    json j = to_json(YAML::Load(yaml_text));
    if (j.is_array()) return j;
  } catch (const std::exception& e) {
    return std::string("YAML error: ") + e.what();
  }
  return "not a YAML list";
}

/// Replies with what changes from one call to the next blanked out: times, pids, counters
/// that every control request bumps (all the numbers of the brokers' producers, which carry
/// the requests), and the asyncio tasks' stacks and the ones upstream numbers per connection.
/// `aio_tasks` says the object is an aio_tasks listing.
json normalize(const json& j, const std::string& key = "", bool aio_tasks = false,
               bool numbers = false) {
  if (j.is_array()) {
    json out = json::array();
    for (const auto& v : j) out.push_back(normalize(v, "", aio_tasks, numbers));
    return out;
  }
  if (!j.is_object()) {
    static const std::set<std::string> volatile_keys = {"age", "uptime_seconds", "pid",
                                                        "control_count", "received_count"};
    if (j.is_number() && (numbers || volatile_keys.count(key))) return "<number>";
    return j;
  }
  json out = json::object();
  for (const auto& [k, v] : j.items()) {
    if (aio_tasks || k == "aio_tasks") {
      if (k == "node_id") {
        out[k] = v;
      } else if (k == "aio_tasks") {
        out[k] = normalize(v, k, true, numbers);
      } else if (k.rfind("socket_client_task_", 0) != 0 && k.rfind("Task-", 0) != 0) {
        // Anonymous and per-connection asyncio tasks come and go between two calls.
        out[k] = {{"done", v.value("done", true)}};
      }
      continue;
    }
    bool broker = k == "socket-producer" || k == "pg_notify-producer";
    out[k] = normalize(v, k, false, numbers || broker);
  }
  return out;
}

/// normalize() for the replies of `command`.
json normalize_replies(const json& replies, const std::vector<std::string>& command) {
  return normalize(replies, "", command.front() == "aio_tasks");
}

// ---- configs and CLIs ------------------------------------------------------------------------

/// A config both implementations accept (upstream rejects unknown keys inside its sections).
/// `control_broker` picks the transport dispatcherctl uses.
std::string shared_config(const std::string& ch, const std::string& node,
                          const std::string& control_broker) {
  return R"(version: 2
service:
  pool_kwargs: {min_workers: 1, max_workers: 2}
  main_kwargs: {node_id: )" +
         node + R"(}
brokers:
  pg_notify:
    config: {conninfo: "{DSN}"}
    channels: [")" +
         ch + R"("]
    default_publish_channel: ")" +
         ch + R"("
    max_connection_idle_seconds: null
  socket:
    socket_path: "{DIR}/ctl.sock"
producers:
  ControlProducer: {}
publish:
  default_broker: pg_notify
  default_control_broker: )" +
         control_broker + "\n";
}

/// Writes the client config for `transport` next to the service's and returns its path.
std::string client_config(const ServiceProcess& svc, const std::string& ch, const std::string& node,
                          const std::string& transport) {
  std::string text = shared_config(ch, node, transport);
  for (auto [from, to] : {std::pair<std::string, std::string>{"{DSN}", pg_dsn()},
                          std::pair<std::string, std::string>{"{DIR}", svc.dir()}})
    for (auto p = text.find(from); p != std::string::npos; p = text.find(from))
      text.replace(p, from.size(), to);
  std::string path = svc.dir() + "/ctl-" + transport + ".yml";
  std::ofstream(path) << text;
  return path;
}

/// Upstream's dispatcherctl; options after the subcommand (upstream-spec §5.2).
Output upstream_ctl(const std::vector<std::string>& command, const std::string& config) {
  std::vector<std::string> argv = {upstream().python, upstream().scripts + "/run_dispatcherctl.py"};
  argv.insert(argv.end(), command.begin(), command.end());
  for (const char* a : {"--config", config.c_str(), "--log-level", "CRITICAL"})
    argv.emplace_back(a);
  return run(argv, upstream().env());
}

/// Upstream's CLI waits 1 s for replies, fixed; on a loaded machine a reply can miss that, so
/// an idempotent query is retried until it answers (the answer is what is checked).
Output upstream_ctl_answered(const std::vector<std::string>& command, const std::string& config) {
  Output o;
  eventually(
      [&] {
        o = upstream_ctl(command, config);
        return o.rc == 0;
      },
      60);
  return o;
}

/// Our dispatcherctl, with a generous reply timeout (it returns at the first reply).
Output our_ctl(const std::vector<std::string>& command, const std::string& config) {
  std::vector<std::string> argv = {test_path("DISPATCHERCTL_BIN")};
  argv.insert(argv.end(), command.begin(), command.end());
  for (const char* a : {"--config", config.c_str(), "--timeout", "10"}) argv.emplace_back(a);
  return run(argv);
}

/// Starts upstream's Python service with `config` and waits until both brokers listen.
std::unique_ptr<ServiceProcess> start_upstream_service(const std::string& config) {
  auto svc = std::make_unique<ServiceProcess>(config, std::vector<std::string>{}, upstream().env());
  svc->set_command({upstream().python, upstream().scripts + "/run_dispatcherd.py"});
  EXPECT_TRUE(svc->start());
  EXPECT_TRUE(svc->wait_for_log("Starting listening for pg_notify notifications", 60))
      << svc->log();
  EXPECT_TRUE(svc->wait_for_log("Set up socket server on", 30)) << svc->log();
  return svc;
}

/// Starts our service with `config` and waits until pg_notify listens.
std::unique_ptr<ServiceProcess> start_our_service(const std::string& config) {
  auto svc = std::make_unique<ServiceProcess>(config);
  EXPECT_TRUE(svc->start());
  EXPECT_TRUE(svc->wait_for_log("pg_notify connection established")) << svc->log();
  return svc;
}

/// True when the `running` reply of the service on `ch` lists `slot` (e.g. "worker-0") with
/// task `uuid` (asked over pg_notify, which both services answer).
bool listed(const std::string& ch, const std::string& slot, const std::string& uuid) {
  auto r = pg_control(ch, "running", json::object(), 1, 5);
  return !r.empty() && r[0].contains(slot) && r[0][slot].value("uuid", "") == uuid;
}

class Interop : public ::testing::TestWithParam<std::string> {};

std::string transport_name(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

INSTANTIATE_TEST_SUITE_P(Transports, Interop, ::testing::Values("socket", "pg_notify"),
                         transport_name);

/// Query commands whose replies do not change while the service sits still.
const std::vector<std::vector<std::string>> kQueries = {
    {"alive"},   {"running"}, {"running", "--uuid", "held-sleep"},
    {"workers"}, {"main"},    {"producers"},
    {"chunks"},  {"metrics"}, {"aio_tasks"},
    {"status"}};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : " ") + a;
  return s;
}

// ---- our dispatcherctl against upstream's service -------------------------------------------

TEST_P(Interop, Spec5_2_OurCtlReadsUpstreamServiceLikeUpstreamCtl) {
  REQUIRE_UPSTREAM();
  const std::string transport = GetParam();
  std::string ch = unique_channel("up");
  auto svc = start_upstream_service(shared_config(ch, "upstream-node", "socket"));
  std::string cfg = client_config(*svc, ch, "upstream-node", transport);

  // One task sleeping on a worker and one waiting in the delayer (Python task strings).
  pg_notify(ch, R"j({"task": "lambda: __import__('time').sleep(30)", "uuid": "held-sleep"})j");
  pg_notify(ch, R"({"task": "lambda: None", "uuid": "held-delayed", "delay": 60, "args": [1]})");
  ASSERT_TRUE(eventually([&] { return listed(ch, "worker-0", "held-sleep"); }, 60)) << svc->log();
  ASSERT_TRUE(eventually([&] { return listed(ch, "delayed-0", "held-delayed"); }, 30))
      << svc->log();

  for (const auto& q : kQueries) {
    SCOPED_TRACE(joined(q));
    Output theirs = upstream_ctl_answered(q, cfg);
    ASSERT_EQ(theirs.rc, 0) << theirs.out << theirs.err;
    Output ours = our_ctl(q, cfg);
    ASSERT_EQ(ours.rc, 0) << ours.out << ours.err;
    json t = parse_replies(theirs.out), o = parse_replies(ours.out);
    ASSERT_TRUE(o.is_array()) << o << "\n" << ours.out;
    ASSERT_EQ(o.size(), 1u) << ours.out;
    EXPECT_EQ(o[0]["node_id"], "upstream-node") << ours.out;
    EXPECT_EQ(normalize_replies(o, q), normalize_replies(t, q)) << "ours:\n"
                                                                << ours.out << "upstream's:\n"
                                                                << theirs.out;
  }

  // set_log_level: ours sets it, upstream's CLI then sees ours as the previous level.
  Output lvl = our_ctl({"set_log_level", "--level", "INFO"}, cfg);
  ASSERT_EQ(lvl.rc, 0) << lvl.err;
  EXPECT_EQ(parse_replies(lvl.out), json::parse(R"([{"logger": "dispatcherd", "level": "INFO",
      "previous_level": "NOTSET", "node_id": "upstream-node"}])"))
      << lvl.out;
  Output lvl2 = upstream_ctl_answered({"set_log_level", "--level", "WARNING"}, cfg);
  EXPECT_EQ(parse_replies(lvl2.out)[0]["previous_level"], "INFO") << lvl2.out;

  // cancel answers like upstream's `running` with the same filter, just before it.
  for (const std::string uuid : {"held-delayed", "held-sleep"}) {
    SCOPED_TRACE(uuid);
    Output before = upstream_ctl_answered({"running", "--uuid", uuid}, cfg);
    json expected = parse_replies(before.out);
    ASSERT_EQ(expected.size(), 1u) << before.out;
    ASSERT_EQ(expected[0].size(), 2u) << before.out;  // the match and node_id
    Output c = our_ctl({"cancel", "--uuid", uuid}, cfg);
    ASSERT_EQ(c.rc, 0) << c.err;
    EXPECT_EQ(parse_replies(c.out), expected) << c.out;
  }
  // Upstream's service acted on both: the sleeper ended as cancelled, the delayed one is gone.
  ASSERT_TRUE(eventually(
      [&] {
        json m = parse_replies(upstream_ctl({"main"}, cfg).out);
        return m.is_array() && m.size() == 1 && m[0]["pool"]["canceled_count"] == 1;
      },
      60))
      << svc->log();
  Output running = upstream_ctl_answered({"running"}, cfg);
  EXPECT_EQ(parse_replies(running.out), json::parse(R"([{"node_id": "upstream-node"}])"))
      << running.out;
}

// ---- upstream's dispatcherctl against our service -------------------------------------------

TEST_P(Interop, Spec5_2_UpstreamCtlReadsOurService) {
  REQUIRE_UPSTREAM();
  const std::string transport = GetParam();
  std::string ch = unique_channel("ours");
  auto svc = start_our_service(shared_config(ch, "our-node", "socket"));
  std::string cfg = client_config(*svc, ch, "our-node", transport);

  pg_notify(ch, R"({"task": "dispatcherd.builtin.sleep", "uuid": "held-sleep", "args": [30]})");
  pg_notify(ch, R"({"task": "dispatcherd.builtin.noop", "uuid": "held-delayed", "delay": 60})");
  ASSERT_TRUE(eventually([&] { return listed(ch, "worker-0", "held-sleep"); }, 30)) << svc->log();
  ASSERT_TRUE(eventually([&] { return listed(ch, "delayed-0", "held-delayed"); }, 30))
      << svc->log();

  std::map<std::string, json> replies;
  for (const auto& q : kQueries) {
    SCOPED_TRACE(joined(q));
    Output theirs = upstream_ctl_answered(q, cfg);
    ASSERT_EQ(theirs.rc, 0) << theirs.out << theirs.err << svc->log();
    json t = parse_replies(theirs.out);
    ASSERT_TRUE(t.is_array()) << t << "\n" << theirs.out;
    ASSERT_EQ(t.size(), 1u) << theirs.out;
    EXPECT_EQ(t[0]["node_id"], "our-node") << theirs.out;
    replies[joined(q)] = t[0];
    // Both CLIs read our replies to the same data.
    Output ours = our_ctl(q, cfg);
    ASSERT_EQ(ours.rc, 0) << ours.err;
    EXPECT_EQ(normalize_replies(parse_replies(ours.out), q), normalize_replies(t, q))
        << "ours:\n"
        << ours.out << "upstream's:\n"
        << theirs.out;
  }

  // The shapes upstream's users rely on (§4.4).
  EXPECT_EQ(replies["alive"], json({{"node_id", "our-node"}}));
  const json& running = replies["running"];
  EXPECT_EQ(running["worker-0"], json::parse(R"({"task": "dispatcherd.builtin.sleep",
      "uuid": "held-sleep", "args": [30], "channel": ")" +
                                             ch + "\"}"))
      << running;
  EXPECT_EQ(running["delayed-0"]["uuid"], "held-delayed") << running;
  EXPECT_EQ(running["delayed-0"]["delay"], 60) << running;
  EXPECT_EQ(replies["running --uuid held-sleep"],
            json({{"worker-0", running["worker-0"]}, {"node_id", "our-node"}}));
  const json& w = replies["workers"]["worker-0"];
  EXPECT_EQ(w["worker_id"], 0) << w;
  EXPECT_TRUE(w["pid"].is_number_integer()) << w;
  EXPECT_EQ(w["status"], "ready") << w;
  EXPECT_EQ(w["current_task"], "dispatcherd.builtin.sleep") << w;
  EXPECT_EQ(w["current_task_uuid"], "held-sleep") << w;
  EXPECT_EQ(w["active_cancel"], false) << w;
  EXPECT_TRUE(w["finished_count"].is_number_integer()) << w;
  EXPECT_TRUE(w["age"].is_number()) << w;
  const json& m = replies["main"];
  EXPECT_EQ(m["pid"], svc->pid()) << m;
  EXPECT_TRUE(m["received_count"].is_number_integer()) << m;
  EXPECT_TRUE(m["control_count"].is_number_integer()) << m;
  for (const char* k : {"next_worker_id", "finished_count", "canceled_count", "retirement_count"})
    EXPECT_TRUE(m["pool"][k].is_number_integer()) << k << " in " << m;
  const json& p = replies["producers"];
  for (const char* k : {"pg_notify-producer", "socket-producer", "control-producer"}) {
    EXPECT_TRUE(p[k]["produced_count"].is_number_integer()) << k << " in " << p;
    EXPECT_TRUE(p[k]["uptime_seconds"].is_number()) << k << " in " << p;
  }
  EXPECT_TRUE(p["pg_notify-producer"]["recycle_count"].is_number_integer()) << p;
  EXPECT_EQ(replies["metrics"], json({{"enabled", false}, {"node_id", "our-node"}}));
  EXPECT_EQ(replies["chunks"]["partials"], json::object()) << replies["chunks"];
  EXPECT_EQ(replies["aio_tasks"]["results_task"]["done"], false) << replies["aio_tasks"];
  EXPECT_NE(replies["aio_tasks"]["results_task"]["stack"], "") << replies["aio_tasks"];
  const json& st = replies["status"];
  for (const char* k :
       {"running", "aio_tasks", "workers", "producers", "metrics", "main", "chunks"})
    EXPECT_TRUE(st[k].is_object()) << k << " in " << st;
  EXPECT_EQ(st.size(), 8u) << st;
  EXPECT_EQ(st["running"],
            json({{"worker-0", running["worker-0"]}, {"delayed-0", running["delayed-0"]}}))
      << st;

  // Orders, through upstream's CLI.
  Output lvl = upstream_ctl({"set_log_level", "--level", "INFO"}, cfg);
  ASSERT_EQ(lvl.rc, 0) << lvl.out << lvl.err;
  EXPECT_EQ(parse_replies(lvl.out), json::parse(R"([{"logger": "dispatcherd", "level": "INFO",
      "previous_level": "NOTSET", "node_id": "our-node"}])"))
      << lvl.out;
  Output c = upstream_ctl({"cancel", "--uuid", "held-delayed"}, cfg);
  ASSERT_EQ(c.rc, 0) << c.out << c.err;
  EXPECT_EQ(parse_replies(c.out),
            json::array({{{"delayed-0", running["delayed-0"]}, {"node_id", "our-node"}}}))
      << c.out;
  c = upstream_ctl({"cancel", "--uuid", "held-sleep"}, cfg);
  ASSERT_EQ(c.rc, 0) << c.out << c.err;
  EXPECT_EQ(parse_replies(c.out),
            json::array({{{"worker-0", running["worker-0"]}, {"node_id", "our-node"}}}))
      << c.out;
  ASSERT_TRUE(eventually(
      [&] {
        auto r = pg_control(ch, "main");
        return !r.empty() && r[0]["pool"]["canceled_count"] == 1;
      },
      30))
      << svc->log();
  Output after = upstream_ctl_answered({"running"}, cfg);
  EXPECT_EQ(parse_replies(after.out), json::parse(R"([{"node_id": "our-node"}])")) << after.out;
}

// ---- upstream's publisher against our service ------------------------------------------------

TEST(InteropPublish, Spec11_1_UpstreamSubmitTaskRunsOnceOnOurService) {
  REQUIRE_UPSTREAM();
  std::string ch = unique_channel("pub");
  auto svc = start_our_service(shared_config(ch, "our-node", "socket"));
  std::string cfg = client_config(*svc, ch, "our-node", "pg_notify");
  std::string path = svc->dir() + "/record.txt";
  Output pub = run({upstream().python, upstream().scripts + "/publish_task.py", cfg,
                    "dispatcherd.builtin.record", "from-upstream", json({{"path", path}}).dump()},
                   upstream().env());
  ASSERT_EQ(pub.rc, 0) << pub.out << pub.err;
  json sent = json::parse(pub.out, nullptr, false);
  EXPECT_EQ(sent["queue"], ch) << pub.out;
  EXPECT_EQ(sent["body"]["task"], "dispatcherd.builtin.record") << pub.out;
  EXPECT_TRUE(sent["body"]["time_pub"].is_number()) << pub.out;  // upstream's extra field
  ASSERT_TRUE(eventually(
      [&] {
        auto r = pg_control(ch, "main");
        return !r.empty() && r[0]["pool"]["finished_count"] == 1;
      },
      30))
      << svc->log();
  EXPECT_EQ(read_lines(path), std::vector<std::string>{"from-upstream"});
  auto m = pg_control(ch, "main");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0]["pool"]["succeeded_count"], 1) << m[0];
  EXPECT_EQ(m[0]["pool"]["failed_count"], 0) << m[0];
}

}  // namespace
}  // namespace dispatcherd::testing
