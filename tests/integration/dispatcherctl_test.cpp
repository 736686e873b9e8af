// The built dispatcherctl binary against the test Postgres and a fake service: a libpq
// connection of the test LISTENs on the request channel and answers on reply_to (or a Unix
// socket server answers on the connection). Checks the printed YAML, the exit codes of
// upstream-spec §5.2, one-line connection errors, and `submit --count`.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dispatcherd/channel_name.h"
#include "dispatcherd/chunking.h"
#include "dispatcherd/message.h"
#include "pg_test_env.h"

extern char** environ;

namespace dispatcherd {
namespace {

namespace fs = std::filesystem;
using testing::pg_dsn;
using testing::test_path;
using testing::unique_channel;

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A scratch directory with the config file; removed at the end of the test.
struct Scratch {
  fs::path dir;
  Scratch() {
    dir = fs::temp_directory_path() /
          ("ctl_test_" + std::to_string(::getpid()) + "_" + unique_channel("d"));
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string write_config(const std::string& conninfo, const std::string& channel) const {
    const fs::path p = dir / "dispatcher.yml";
    std::ofstream(p) << "version: 2\nbrokers:\n  pg_notify:\n    config:\n      conninfo: \""
                     << conninfo << "\"\n    channels: [" << channel
                     << "]\n    default_publish_channel: " << channel << "\n";
    return p.string();
  }
};

RunResult run_ctl(const Scratch& s, const std::vector<std::string>& args) {
  const std::string bin = test_path("DISPATCHERCTL_BIN");
  RunResult r;
  if (bin.empty() || !fs::exists(bin)) {
    ADD_FAILURE() << "dispatcherctl binary not found: '" << bin << "'";
    return r;
  }
  const fs::path out = s.dir / "stdout", err = s.dir / "stderr";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> argv_s{bin};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    ADD_FAILURE() << "posix_spawn failed: " << rc;
    return r;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

// A LISTENing libpq connection, drained by a thread that hands every notification to
// `on_notify` (which may publish on the same connection).
class Listener {
 public:
  using Handler = std::function<void(Listener&, const std::string&)>;
  Listener(const std::string& channel, Handler on_notify) : on_notify_(std::move(on_notify)) {
    conn_ = PQconnectdb(pg_dsn().c_str());
    EXPECT_EQ(PQstatus(conn_), CONNECTION_OK) << PQerrorMessage(conn_);
    exec("LISTEN " + quote_identifier(channel));
    thread_ = std::thread([this] { loop(); });
  }
  ~Listener() {
    stop_ = true;
    thread_.join();
    PQfinish(conn_);
  }
  void notify(const std::string& channel, const std::string& payload) {
    const char* params[] = {channel.c_str(), payload.c_str()};
    PGresult* r =
        PQexecParams(conn_, "SELECT pg_notify($1, $2)", 2, nullptr, params, nullptr, nullptr, 0);
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQerrorMessage(conn_);
    PQclear(r);
  }
  std::vector<std::string> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }

 private:
  void exec(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQerrorMessage(conn_);
    PQclear(r);
  }
  void loop() {
    while (!stop_) {
      pollfd pfd{PQsocket(conn_), POLLIN, 0};
      if (::poll(&pfd, 1, 20) <= 0) continue;
      PQconsumeInput(conn_);
      while (PGnotify* n = PQnotifies(conn_)) {
        std::string payload = n->extra;
        PQfreemem(n);
        {
          std::lock_guard<std::mutex> lock(mu_);
          received_.push_back(payload);
        }
        if (on_notify_) on_notify_(*this, payload);
      }
    }
  }
  PGconn* conn_ = nullptr;
  Handler on_notify_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> received_;
  std::thread thread_;
};

// Answers every request with `reply` (plus nothing else), chunked when large.
Listener::Handler reply_with(std::string reply) {
  return [reply](Listener& l, const std::string& payload) {
    const json req = json::parse(payload);
    auto pieces = split_message(reply, kPgNotifyMaxBytes);
    ASSERT_TRUE(pieces.ok());
    for (const std::string& p : *pieces) l.notify(req.at("reply_to").get<std::string>(), p);
  };
}

TEST(DispatcherctlPg, AliveWithOneResponder) {
  REQUIRE_PG();
  Scratch s;
  const std::string ch = unique_channel("ctl");
  const std::string cfg = s.write_config(pg_dsn(), ch);
  Listener service(ch, reply_with(R"({"node_id": "fake-1"})"));
  RunResult r = run_ctl(s, {"alive", "--config", cfg});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "- node_id: fake-1\n\n");
  const auto seen = service.received();
  ASSERT_EQ(seen.size(), 1u);
  const json req = json::parse(seen[0]);
  EXPECT_EQ(req["control"], "alive");
  EXPECT_FALSE(req.contains("control_data"));
  EXPECT_EQ(req["reply_to"].get<std::string>().rfind("reply_to_", 0), 0u);
}

TEST(DispatcherctlPg, FewerRepliesThanExpectedPrintsThemAndExitsOne) {
  REQUIRE_PG();
  Scratch s;
  const std::string ch = unique_channel("ctl");
  const std::string cfg = s.write_config(pg_dsn(), ch);
  Listener service(ch, reply_with(R"({"node_id": "fake-1", "n": "123"})"));
  // Options before the subcommand count too (quirk #7 fixed).
  RunResult r =
      run_ctl(s, {"--expected-replies", "2", "main", "--config", cfg, "--timeout", "0.5"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "- n: '123'\n  node_id: fake-1\n\n");
  EXPECT_NE(r.err.find("Obtained only 1 of 2, exiting with non-zero code"), std::string::npos)
      << r.err;
}

TEST(DispatcherctlPg, ControlDataChunkedRepliesAndJsonOutput) {
  REQUIRE_PG();
  Scratch s;
  const std::string ch = unique_channel("ctl");
  const std::string cfg = s.write_config(pg_dsn(), ch);
  const json big = {{"node_id", "fake-1"}, {"blob", std::string(20000, 'z')}};
  Listener service(ch, reply_with(big.dump()));
  RunResult r = run_ctl(s, {"running", "--task", "t.x", "--config", cfg, "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::array({big}));
  const auto seen = service.received();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(json::parse(seen[0])["control_data"], (json{{"task", "t.x"}}));
}

TEST(DispatcherctlPg, UnparsableReplyIsReportedAsAReply) {
  REQUIRE_PG();
  Scratch s;
  const std::string ch = unique_channel("ctl");
  const std::string cfg = s.write_config(pg_dsn(), ch);
  Listener service(ch, reply_with("garbage"));
  RunResult r = run_ctl(s, {"workers", "--config", cfg});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "- error: JSON parse error\n  original: garbage\n\n");
}

TEST(DispatcherctlPg, UnreachableDatabaseIsOneLine) {
  Scratch s;
  const std::string cfg = s.write_config("host=127.0.0.1 port=1 dbname=x connect_timeout=2", "c");
  RunResult r = run_ctl(s, {"alive", "--config", cfg});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("dispatcherctl: cannot connect to Postgres: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("port 1"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

TEST(DispatcherctlSocket, MissingSocketIsOneLine) {
  Scratch s;
  const std::string path = (s.dir / "none.sock").string();
  RunResult r = run_ctl(s, {"alive", "--socket", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "dispatcherctl: cannot connect to socket " + path + ": No such file or directory\n");
}

TEST(DispatcherctlSocket, RepliesOnTheConnectionAndMissingOnesExitOne) {
  Scratch s;
  const std::string path = (s.dir / "svc.sock").string();
  int server = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  path.copy(addr.sun_path, path.size());
  ASSERT_EQ(::bind(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(server, 4), 0);
  std::string request;
  // One reply of 3000 bytes, sent as 1024-byte chunk lines like the socket broker does.
  const json reply = {{"node_id", "sock-1"}, {"pad", std::string(3000, 'p')}};
  std::thread service([&] {
    int c = ::accept(server, nullptr, nullptr);
    std::string buf;
    char tmp[4096];
    while (buf.find('\n') == std::string::npos) {
      ssize_t n = ::read(c, tmp, sizeof tmp);
      if (n <= 0) break;
      buf.append(tmp, static_cast<std::size_t>(n));
    }
    request = buf.substr(0, buf.find('\n'));
    std::string out;
    auto pieces = split_message(reply.dump(), kSocketMaxBytes);
    if (pieces.ok())
      for (const std::string& p : *pieces) out += p + "\n";
    (void)!::write(c, out.data(), out.size());
    char drain[64];
    while (::read(c, drain, sizeof drain) > 0) {
    }
    ::close(c);
  });
  RunResult r = run_ctl(
      s, {"alive", "--socket", path, "--expected-replies", "2", "--timeout", "0.5", "--json"});
  service.join();
  ::close(server);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(json::parse(r.out), json::array({reply}));
  EXPECT_NE(r.err.find("Obtained only 1 of 2"), std::string::npos) << r.err;
  EXPECT_EQ(json::parse(request)["control"], "alive");
}

TEST(DispatcherctlSubmit, CountDeliversDistinctMessages) {
  REQUIRE_PG();
  Scratch s;
  const std::string ch = unique_channel("submit");
  const std::string cfg = s.write_config(pg_dsn(), ch);
  Listener service(ch, nullptr);
  RunResult r = run_ctl(s, {"submit", "tests.task", "--count", "50", "--config", cfg, "--kwargs",
                            R"({"k": 1})", "--uuid", "u"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "submitted 50 task(s) to " + ch + "\n");
  std::vector<std::string> got;
  for (int i = 0; i < 200 && (got = service.received()).size() < 50; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(got.size(), 50u);
  std::set<std::string> uuids;
  for (const std::string& p : got) {
    const json m = json::parse(p);
    EXPECT_EQ(m["task"], "tests.task");
    EXPECT_EQ(m["kwargs"], (json{{"k", 1}}));
    uuids.insert(m["uuid"].get<std::string>());
  }
  EXPECT_EQ(uuids.size(), 50u);
  EXPECT_TRUE(uuids.count("u-0") && uuids.count("u-49"));
}

TEST(DispatcherctlSubmit, LargeMessageIsChunked) {
  REQUIRE_PG();
  Scratch s;
  const std::string ch = unique_channel("submit");
  const std::string cfg = s.write_config(pg_dsn(), ch);
  Listener service(ch, nullptr);
  const std::string arg(20000, 'a');
  RunResult r = run_ctl(s, {"submit", "big", "--config", cfg, "--args", "[\"" + arg + "\"]"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json assembled;
  for (int i = 0; i < 200 && assembled.is_null(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ChunkAccumulator fresh;
    for (const std::string& p : service.received()) {
      auto in = fresh.ingest(json::parse(p), 0);
      if (in.outcome == ChunkAccumulator::Outcome::Complete) assembled = in.message;
    }
  }
  ASSERT_FALSE(assembled.is_null());
  EXPECT_EQ(assembled["args"], json::array({arg}));
}

}  // namespace
}  // namespace dispatcherd
