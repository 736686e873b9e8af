// bench/throughput: publishes a burst of no-op tasks to a running dispatcherd and measures how
// fast it runs them, next to the pg_notify transport ceiling measured in the same run.
//
//   throughput --dsn DSN --channel CH --pid MAIN_PID [--count 20000] [--batch 100]
//
// Prints one JSON object: tasks/s end to end, the ceiling (publish + receive by a bare LISTEN
// connection), the fraction, and CPU per task of the main process and of all workers.
#include <dirent.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using Conn = std::unique_ptr<PGconn, decltype(&PQfinish)>;

double secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

Conn connect(const std::string& dsn) {
  Conn c(PQconnectdb(dsn.c_str()), &PQfinish);
  if (PQstatus(c.get()) != CONNECTION_OK) {
    std::fprintf(stderr, "connect: %s", PQerrorMessage(c.get()));
    std::exit(1);
  }
  return c;
}

void exec(PGconn* c, const std::string& sql, std::vector<std::string> params = {}) {
  std::vector<const char*> p;
  for (auto& s : params) p.push_back(s.c_str());
  PGresult* r = PQexecParams(c, sql.c_str(), static_cast<int>(p.size()), nullptr, p.data(),
                             nullptr, nullptr, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
    std::fprintf(stderr, "%s: %s", sql.c_str(), PQerrorMessage(c));
    std::exit(1);
  }
  PQclear(r);
}

// Publishes `count` distinct payloads, `batch` per statement (one transaction each).
void publish(PGconn* c, const std::string& channel, int count, int batch, const std::string& tag) {
  for (int i = 0; i < count; i += batch) {
    int n = std::min(batch, count - i);
    exec(c,
         "SELECT pg_notify($1, '{\"task\": \"dispatcherd.builtin.noop\", \"uuid\": \"" + tag +
             "-' || g || '\"}') FROM generate_series($2::int, $3::int) g",
         {channel, std::to_string(i), std::to_string(i + n - 1)});
  }
}

// CPU seconds (user + system) of one process.
double cpu_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  auto r = s.rfind(')');
  if (r == std::string::npos) return 0;
  std::istringstream rest(s.substr(r + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15; ++i) {
    rest >> f;
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

pid_t ppid_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  auto r = s.rfind(')');
  if (r == std::string::npos) return -1;
  std::istringstream rest(s.substr(r + 2));
  char st;
  pid_t pp;
  rest >> st >> pp;
  return pp;
}

// Pids of the workers: the zygote's children (the zygote is main's child).
std::vector<pid_t> workers_of(pid_t main_pid) {
  std::map<pid_t, pid_t> parent;
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      pid_t p = std::atoi(e->d_name);
      if (p > 0) parent[p] = ppid_of(p);
    }
    closedir(d);
  }
  std::vector<pid_t> out;
  for (auto& [p, pp] : parent)
    if (pp > 0 && parent.count(pp) && parent[pp] == main_pid) out.push_back(p);
  return out;
}

// Asks the service for `main` over pg_notify; returns pool.finished_count (+ canceled).
long finished(PGconn* c, const std::string& channel) {
  static int n = 0;
  std::string reply = "reply_to_bench_" + std::to_string(getpid()) + "_" + std::to_string(n++);
  exec(c, "LISTEN \"" + reply + "\"");
  exec(c, "SELECT pg_notify($1, $2)",
       {channel, "{\"control\": \"main\", \"reply_to\": \"" + reply + "\"}"});
  auto deadline = Clock::now() + std::chrono::seconds(10);
  long out = -1;
  while (out < 0 && Clock::now() < deadline) {
    PQconsumeInput(c);
    while (PGnotify* note = PQnotifies(c)) {
      auto j = nlohmann::json::parse(note->extra, nullptr, false);
      if (j.is_object() && j.contains("pool"))
        out = j["pool"].value("finished_count", 0L) + j["pool"].value("canceled_count", 0L);
      PQfreemem(note);
    }
    if (out < 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  exec(c, "UNLISTEN \"" + reply + "\"");
  return out;
}

// The ceiling: how fast one LISTEN connection receives what this publisher sends.
double ceiling(const std::string& dsn, int count, int batch) {
  Conn listener = connect(dsn), pub = connect(dsn);
  std::string ch = "bench_ceiling_" + std::to_string(getpid());
  exec(listener.get(), "LISTEN \"" + ch + "\"");
  auto t0 = Clock::now();
  int got = 0;
  std::thread t([&] { publish(pub.get(), ch, count, batch, "c"); });
  while (got < count) {
    PQconsumeInput(listener.get());
    while (PGnotify* n = PQnotifies(listener.get())) {
      ++got;
      PQfreemem(n);
    }
  }
  t.join();
  return count / secs(t0, Clock::now());
}

}  // namespace

int main(int argc, char** argv) {
  std::string dsn, channel;
  pid_t pid = 0;
  int count = 20000, batch = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--dsn") dsn = argv[i + 1];
    else if (a == "--channel") channel = argv[i + 1];
    else if (a == "--pid") pid = std::atoi(argv[i + 1]);
    else if (a == "--count") count = std::atoi(argv[i + 1]);
    else if (a == "--batch") batch = std::atoi(argv[i + 1]);
  }
  if (dsn.empty() || channel.empty() || pid <= 0) {
    std::fprintf(stderr, "usage: throughput --dsn DSN --channel CH --pid PID [--count N] [--batch B]\n");
    return 2;
  }
  double ceil = ceiling(dsn, count, batch);

  Conn ctl = connect(dsn), pub = connect(dsn);
  long base = finished(ctl.get(), channel);
  auto workers = workers_of(pid);
  double main0 = cpu_of(pid), w0 = 0;
  for (pid_t w : workers) w0 += cpu_of(w);
  auto t0 = Clock::now();
  publish(pub.get(), channel, count, batch, "t" + std::to_string(getpid()));
  long done = base;
  while (done < base + count) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling costs the service too
    done = finished(ctl.get(), channel);
    if (secs(t0, Clock::now()) > 120) break;
  }
  double elapsed = secs(t0, Clock::now());
  double main1 = cpu_of(pid), w1 = 0;
  for (pid_t w : workers) w1 += cpu_of(w);
  double rate = (done - base) / elapsed;
  nlohmann::json out = {{"tasks", done - base},
                        {"seconds", elapsed},
                        {"tasks_per_s", rate},
                        {"ceiling_per_s", ceil},
                        {"fraction_of_ceiling", rate / ceil},
                        {"main_cpu_us_per_task", (main1 - main0) * 1e6 / count},
                        {"worker_cpu_us_per_task", (w1 - w0) * 1e6 / count},
                        {"workers", workers.size()}};
  std::printf("%s\n", out.dump().c_str());
  return done - base >= count ? 0 : 1;
}
