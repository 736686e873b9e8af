#include "support.h"

#include <dirent.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "dispatcherd/publish.h"
#include "stamp_record.h"

namespace bench {

double secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::int64_t realtime_ns() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

void sleep_until_ns(std::int64_t t_ns) {
  timespec t{static_cast<time_t>(t_ns / 1000000000), static_cast<long>(t_ns % 1000000000)};
  while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &t, nullptr) == EINTR) {
  }
}

Conn connect(const std::string& dsn) {
  Conn c(PQconnectdb(dsn.c_str()), &PQfinish);
  if (PQstatus(c.get()) != CONNECTION_OK) {
    std::fprintf(stderr, "connect: %s", PQerrorMessage(c.get()));
    std::exit(1);
  }
  return c;
}

void exec(PGconn* c, const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> p;
  p.reserve(params.size());
  for (const auto& s : params) p.push_back(s.c_str());
  PGresult* r = PQexecParams(c, sql.c_str(), static_cast<int>(p.size()), nullptr, p.data(), nullptr,
                             nullptr, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
    std::fprintf(stderr, "%s: %s", sql.c_str(), PQerrorMessage(c));
    std::exit(1);
  }
  PQclear(r);
}

Method parse_method(const std::string& name) {
  if (name == "batch") return Method::Batch;
  if (name == "single") return Method::Single;
  if (name == "lib") return Method::Library;
  std::fprintf(stderr, "unknown publish method %s (batch, single, lib)\n", name.c_str());
  std::exit(2);
}

namespace {

// The pad that brings `{"task": "T", "uuid": "TAG-N", "kwargs": {"pad": "..."}}` to about
// `payload` bytes (exactly, for uuids of count-1's digit count).
std::string pad_for(const Burst& b) {
  const std::size_t fixed =
      std::string(R"({"task": "", "uuid": "-", "kwargs": {"pad": ""}})").size() + b.task.size() +
      b.tag.size() + std::to_string(b.count > 0 ? b.count - 1 : 0).size();
  const std::size_t want = b.payload > 0 ? static_cast<std::size_t>(b.payload) : 0;
  return std::string(want > fixed ? want - fixed : 0, 'x');
}

void publish_batch_sql(PGconn* c, const Burst& b) {
  const std::string pad = pad_for(b);
  for (int i = 0; i < b.count; i += b.batch) {
    int n = std::min(b.batch, b.count - i);
    exec(c,
         R"(SELECT pg_notify($1, '{"task": "' || $4 || '", "uuid": "' || $5 || '-' || g ||)"
         R"( '", "kwargs": {"pad": "' || $6 || '"}}') FROM generate_series($2::int, $3::int) g)",
         {b.channel, std::to_string(i), std::to_string(i + n - 1), b.task, b.tag, pad});
  }
}

void publish_single(PGconn* c, const Burst& b) {
  const std::string pad = pad_for(b);
  const std::string head = R"({"task": ")" + b.task + R"(", "uuid": ")" + b.tag + "-";
  const std::string tail = R"(", "kwargs": {"pad": ")" + pad + R"("}})";
  for (int i = 0; i < b.count; ++i)
    exec(c, "SELECT pg_notify($1, $2)", {b.channel, head + std::to_string(i) + tail});
}

long publish_library(const Burst& b) {
  dispatcherd::PublisherOptions o;
  o.conninfo = b.conninfo;
  o.default_channel = b.channel;
  auto pub = dispatcherd::Publisher::connect(o);
  if (!pub) {
    std::fprintf(stderr, "publisher: %s\n", pub.error().message.c_str());
    std::exit(1);
  }
  dispatcherd::TaskMessage m;
  m.task = b.task;
  m.kwargs = {{"pad", ""}};
  const std::string sample_uuid = b.tag + "-" + std::to_string(b.count > 0 ? b.count - 1 : 0);
  auto sample = dispatcherd::encode_task_message(m, 1.7e9, sample_uuid);
  if (!sample) {
    std::fprintf(stderr, "encode: %s\n", sample.error().message.c_str());
    std::exit(1);
  }
  const std::size_t fixed = sample->size();
  const std::size_t want = b.payload > 0 ? static_cast<std::size_t>(b.payload) : 0;
  m.kwargs["pad"] = std::string(want > fixed ? want - fixed : 0, 'x');
  long pieces = 0;
  std::vector<dispatcherd::TaskMessage> batch;
  for (int i = 0; i < b.count; i += b.batch) {
    batch.clear();
    for (int j = i; j < std::min(b.count, i + b.batch); ++j) {
      m.uuid = b.tag + "-" + std::to_string(j);
      batch.push_back(m);
    }
    auto report = pub->publish_batch(batch, dispatcherd::BatchMode::SingleTransaction);
    if (!report) {
      std::fprintf(stderr, "publish_batch: %s\n", report.error().message.c_str());
      std::exit(1);
    }
    for (const auto& p : report->published) pieces += static_cast<long>(p.pieces);
  }
  return pieces;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

}  // namespace

long publish(PGconn* c, const Burst& b) {
  switch (b.method) {
    case Method::Batch:
      publish_batch_sql(c, b);
      return b.count;
    case Method::Single:
      publish_single(c, b);
      return b.count;
    case Method::Library:
      return publish_library(b);
  }
  return 0;
}

void publish_stamp(PGconn* c, const std::string& channel, const std::string& uuid,
                   const std::string& file) {
  exec(c, "SELECT pg_notify($1, $2)",
       {channel, R"({"task": "bench.stamp", "uuid": ")" + uuid + R"(", "kwargs": {"file": ")" +
                     file + R"("}})"});
}

std::int64_t wait_stamp(const std::string& file, const std::string& uuid, double timeout_s) {
  auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  std::size_t seen = 0;  // bytes already looked at
  while (Clock::now() < deadline) {
    std::ifstream in(file, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(seen));
    StampRecord r{};
    while (in.read(reinterpret_cast<char*>(&r), sizeof r)) {
      seen += sizeof r;
      if (uuid.compare(0, std::string::npos, r.uuid, strnlen(r.uuid, sizeof r.uuid)) == 0)
        return r.start_ns;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return -1;
}

FinishedPoller::FinishedPoller(PGconn* c, std::string channel)
    : c_(c), channel_(std::move(channel)), reply_to_("reply_to_bench_" + std::to_string(getpid())) {
  exec(c_, "LISTEN \"" + reply_to_ + "\"");
}

long FinishedPoller::get() {
  // Requests go one at a time; a late reply to an earlier, timed-out one is dropped here.
  PQconsumeInput(c_);
  while (PGnotify* stale = PQnotifies(c_)) PQfreemem(stale);
  exec(c_, "SELECT pg_notify($1, $2)",
       {channel_, R"({"control": "main", "reply_to": ")" + reply_to_ + R"("})"});
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    long out = -1;  // the reply may already be buffered by the statement above
    while (PGnotify* note = PQnotifies(c_)) {
      auto j = nlohmann::json::parse(note->extra, nullptr, false);
      if (j.is_object() && j.contains("pool"))
        out = j["pool"].value("finished_count", 0L) + j["pool"].value("canceled_count", 0L);
      PQfreemem(note);
    }
    if (out >= 0) return out;
    pollfd p{PQsocket(c_), POLLIN, 0};
    poll(&p, 1, 100);
    PQconsumeInput(c_);
  }
  return -1;
}

double cpu_of(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  {
    std::istringstream in(slurp(dir + "/schedstat"));
    unsigned long long ns = 0;
    if (in >> ns) return static_cast<double>(ns) / 1e9;
  }
  std::string s = slurp(dir + "/stat");
  auto r = s.rfind(')');
  if (r == std::string::npos) return 0;
  std::istringstream rest(s.substr(r + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> f; ++i) {
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::vector<pid_t> descendants(pid_t pid) {
  std::vector<pid_t> out, todo{pid};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    DIR* d = opendir(("/proc/" + std::to_string(p) + "/task").c_str());
    if (!d) continue;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::istringstream in(
          slurp("/proc/" + std::to_string(p) + "/task/" + e->d_name + "/children"));
      pid_t child;
      while (in >> child) {
        out.push_back(child);
        todo.push_back(child);
      }
    }
    closedir(d);
  }
  return out;
}

}  // namespace bench
