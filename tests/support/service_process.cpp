#include "service_process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <thread>

#include "dispatcherd/message.h"
#include "pg_test_env.h"

namespace dispatcherd::testing {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

using PgPtr = std::unique_ptr<PGconn, decltype(&PQfinish)>;
using ResPtr = std::unique_ptr<PGresult, decltype(&PQclear)>;

PgPtr connect() {
  PgPtr c(PQconnectdb(pg_dsn().c_str()), &PQfinish);
  if (PQstatus(c.get()) != CONNECTION_OK) ADD_FAILURE() << PQerrorMessage(c.get());
  return c;
}

pid_t parent_of(pid_t pid) {
  std::string s = read_proc_file("/proc/" + std::to_string(pid) + "/stat");
  auto r = s.rfind(')');
  if (r == std::string::npos) return -1;
  std::istringstream rest(s.substr(r + 2));
  char state;
  pid_t ppid;
  rest >> state >> ppid;
  return state == 'Z' ? -1 : ppid;
}

}  // namespace

ServiceProcess::ServiceProcess(std::string config_yaml, std::vector<std::string> extra_args,
                               std::vector<std::string> extra_env)
    : config_(std::move(config_yaml)), args_(std::move(extra_args)), env_(std::move(extra_env)) {
  char tmpl[] = "/tmp/dspd.XXXXXX";
  dir_ = ::mkdtemp(tmpl);
  ::chmod(dir_.c_str(), 0777);
  config_ = replace_all(replace_all(config_, "{DSN}", pg_dsn()), "{DIR}", dir_);
}

ServiceProcess::~ServiceProcess() {
  if (pid_ > 0 && !exited_) {
    auto tree = descendants(pid_);
    ::kill(pid_, SIGKILL);
    for (pid_t p : tree) ::kill(p, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  if (!::getenv("DISPATCHERD_KEEP_TEST_DIRS")) {
    std::string cmd = "rm -rf '" + dir_ + "'";
    [[maybe_unused]] int rc = std::system(cmd.c_str());
  }
}

bool ServiceProcess::start() {
  std::string cfg = dir_ + "/dispatcher.yml";
  std::ofstream(cfg) << config_;
  std::string logpath = dir_ + "/service.log";
  std::vector<std::string> argv = command_;
  if (argv.empty()) argv.push_back(test_path("DISPATCHERD_BIN"));
  std::string bin_path = argv[0];
  const char* bin = bin_path.c_str();
  if (bin_path.empty()) {
    ADD_FAILURE() << "DISPATCHERD_BIN is not set";
    return false;
  }
  argv.insert(argv.end(), {"--config", cfg});
  if (log_level_flag_) argv.insert(argv.end(), {"--log-level", "DEBUG"});
  argv.insert(argv.end(), args_.begin(), args_.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    int fd = ::open(logpath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::setpgid(0, 0);
    for (auto& e : env_) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(bin, cargv.data());
    ::_exit(127);
  }
  return pid_ > 0;
}

std::string ServiceProcess::log() const {
  std::ifstream in(dir_ + "/service.log");
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

bool ServiceProcess::wait_for_log(const std::string& needle, double timeout) const {
  // Gives up early when the process has already exited (e.g. a config error).
  return eventually(
             [&] {
               return log().find(needle) != std::string::npos || (pid_ > 0 && !process_alive(pid_));
             },
             timeout) &&
         log().find(needle) != std::string::npos;
}

void ServiceProcess::signal(int sig) const {
  ::kill(pid_, sig);
}

std::optional<int> ServiceProcess::wait_exit(double timeout) {
  double deadline = now_s() + timeout;
  while (now_s() < deadline) {
    int st;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      return st;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

void pg_notify(const std::string& channel, const std::string& payload) {
  auto c = connect();
  const char* params[2] = {channel.c_str(), payload.c_str()};
  ResPtr r(
      PQexecParams(c.get(), "SELECT pg_notify($1, $2)", 2, nullptr, params, nullptr, nullptr, 0),
      &PQclear);
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) ADD_FAILURE() << PQerrorMessage(c.get());
}

void pg_notify_many(const std::string& channel, const std::vector<std::string>& payloads,
                    std::size_t per_statement) {
  auto c = connect();
  for (std::size_t i = 0; i < payloads.size(); i += per_statement) {
    // One statement, one transaction: payloads must be distinct (Postgres collapses duplicates).
    nlohmann::json arr = nlohmann::json::array();
    for (std::size_t j = i; j < std::min(payloads.size(), i + per_statement); ++j)
      arr.push_back(payloads[j]);
    std::string a = arr.dump();
    const char* params[2] = {channel.c_str(), a.c_str()};
    ResPtr r(
        PQexecParams(c.get(), "SELECT pg_notify($1, x) FROM json_array_elements_text($2::json) x",
                     2, nullptr, params, nullptr, nullptr, 0),
        &PQclear);
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) ADD_FAILURE() << PQerrorMessage(c.get());
  }
}

std::vector<nlohmann::json> pg_control(const std::string& channel, const std::string& command,
                                       const nlohmann::json& data, std::size_t expected,
                                       double timeout) {
  auto c = connect();
  std::string reply = "reply_to_" + uuid4_underscored();
  ResPtr l(PQexec(c.get(), ("LISTEN \"" + reply + "\"").c_str()), &PQclear);
  nlohmann::json req = {{"control", command}, {"reply_to", reply}};
  if (!data.empty()) req["control_data"] = data;
  std::string payload = req.dump();
  const char* params[2] = {channel.c_str(), payload.c_str()};
  ResPtr r(
      PQexecParams(c.get(), "SELECT pg_notify($1, $2)", 2, nullptr, params, nullptr, nullptr, 0),
      &PQclear);
  std::vector<nlohmann::json> out;
  std::string partial;
  double deadline = now_s() + timeout;
  while (out.size() < expected && now_s() < deadline) {
    PQconsumeInput(c.get());
    while (PGnotify* n = PQnotifies(c.get())) {
      nlohmann::json j = nlohmann::json::parse(n->extra, nullptr, false);
      PQfreemem(n);
      if (j.is_object() && j.contains("__dispatcherd_chunk__")) {
        // Tests keep replies small; a chunked reply is reassembled naively in order.
        partial += j.value("payload", "");
        if (j.value("index", 0) + 1 == j.value("total", 0)) {
          out.push_back(nlohmann::json::parse(partial, nullptr, false));
          partial.clear();
        }
        continue;
      }
      out.push_back(j);
    }
    if (out.size() >= expected) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return out;
}

std::set<pid_t> descendants(pid_t root) {
  std::set<pid_t> out;
  std::map<pid_t, pid_t> parent;
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) {
      pid_t p = static_cast<pid_t>(std::atoi(e->d_name));
      if (p > 0) parent[p] = parent_of(p);
    }
    ::closedir(d);
  }
  bool grew = true;
  std::set<pid_t> frontier = {root};
  while (grew) {
    grew = false;
    for (auto& [p, pp] : parent)
      if (frontier.count(pp) && !frontier.count(p)) {
        frontier.insert(p);
        out.insert(p);
        grew = true;
      }
  }
  return out;
}

bool process_alive(pid_t pid) {
  return parent_of(pid) >= 0;
}

long private_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string key;
  long total = 0, v;
  std::string unit;
  while (in >> key) {
    if (key == "Private_Clean:" || key == "Private_Dirty:") {
      in >> v >> unit;
      total += v;
    }
  }
  return total;
}

bool eventually(const std::function<bool()>& cond, double timeout) {
  double deadline = now_s() + timeout;
  while (true) {
    if (cond()) return true;
    if (now_s() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string read_proc_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return n < 0 ? std::string() : out;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

}  // namespace dispatcherd::testing
