// bench_latency: publishes `bench.stamp` tasks at a fixed rate, one statement per task, and
// measures per task
//   publish → start: the task's CLOCK_REALTIME at start minus the publisher's stamp, taken just
//                    before the statement is sent (carried in kwargs "t_pub_ns");
//   read → start:    what the service adds: main taking the notification it read (after its
//                    one-pass scan) to the task's start (queue, IPC to a worker, the worker's
//                    wake-up and decode), from TaskContext::received_at() (the record's added_ns);
//   receive → start: start minus the moment a bare LISTEN connection of this tool, on the same
//                    channel, got the notification. Postgres wakes that connection's backend
//                    and main's separately, so this mixes in their scheduling skew (either way:
//                    it can be negative); kept for reference;
//   publish → receive: the transport alone, for reference.
//
//   bench_latency --dsn DSN --channel CH --stamp-file F --rate 1000 --count 5000 [--tag T]
//
// Waits (up to --timeout seconds after publishing, default 30) until the stamp file holds a
// record for every task, then prints one JSON object: p50/p99/p99.9/max in µs of each.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "stamp_record.h"
#include "support.h"

namespace {

struct Args {
  std::string dsn, channel, stamp_file, tag;
  double rate = 1000, timeout = 30;
  int count = 5000;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--dsn")
      a.dsn = v;
    else if (k == "--channel")
      a.channel = v;
    else if (k == "--stamp-file")
      a.stamp_file = v;
    else if (k == "--tag")
      a.tag = v;
    else if (k == "--rate")
      a.rate = std::atof(v.c_str());
    else if (k == "--count")
      a.count = std::atoi(v.c_str());
    else if (k == "--timeout")
      a.timeout = std::atof(v.c_str());
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (a.dsn.empty() || a.channel.empty() || a.stamp_file.empty() || a.rate <= 0 || a.count <= 0) {
    std::fprintf(stderr,
                 "usage: bench_latency --dsn DSN --channel CH --stamp-file F --rate R --count N\n");
    std::exit(2);
  }
  if (a.tag.empty()) a.tag = std::string("l").append(std::to_string(getpid()));
  return a;
}

// The task index of a uuid "<tag>-<i>", or -1.
long index_of(std::string_view uuid, const std::string& tag) {
  if (uuid.size() <= tag.size() + 1 || uuid.compare(0, tag.size(), tag) != 0 ||
      uuid[tag.size()] != '-')
    return -1;
  return std::atol(std::string(uuid.substr(tag.size() + 1)).c_str());
}

// The uuid inside a payload we published: `"uuid": "..."`.
std::string_view uuid_in(const char* payload) {
  const char* p = std::strstr(payload, R"("uuid": ")");
  if (!p) return {};
  p += 9;
  const char* e = std::strchr(p, '"');
  return e ? std::string_view(p, static_cast<std::size_t>(e - p)) : std::string_view{};
}

nlohmann::json percentiles(std::vector<double> v) {
  if (v.empty()) return nullptr;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
  };
  return {{"p50_us", at(0.5)},  {"p99_us", at(0.99)},  {"p999_us", at(0.999)},
          {"max_us", v.back()}, {"min_us", v.front()}, {"n", v.size()}};
}

std::vector<bench::StampRecord> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<bench::StampRecord> out;
  bench::StampRecord r{};
  while (in.read(reinterpret_cast<char*>(&r), sizeof r)) out.push_back(r);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  std::vector<std::int64_t> received(static_cast<std::size_t>(a.count), 0);
  std::atomic<bool> ready{false}, stop{false};
  std::thread listener([&] {
    bench::Conn c = bench::connect(a.dsn);
    bench::exec(c.get(), "LISTEN \"" + a.channel + "\"");
    ready = true;
    while (!stop) {
      pollfd p{PQsocket(c.get()), POLLIN, 0};
      poll(&p, 1, 50);
      PQconsumeInput(c.get());
      const std::int64_t now = bench::realtime_ns();
      while (PGnotify* n = PQnotifies(c.get())) {
        long i = index_of(uuid_in(n->extra), a.tag);
        if (i >= 0 && i < a.count && received[static_cast<std::size_t>(i)] == 0)
          received[static_cast<std::size_t>(i)] = now;
        PQfreemem(n);
      }
    }
  });
  while (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  bench::Conn pub = bench::connect(a.dsn);
  const std::string head = R"({"task": "bench.stamp", "uuid": ")" + a.tag + "-";
  const std::string mid = R"(", "kwargs": {"file": ")" + a.stamp_file + R"(", "t_pub_ns": )";
  const double interval_ns = 1e9 / a.rate;
  const std::int64_t t0 = bench::realtime_ns() + 10000000;
  long late = 0;  // sends that started more than one interval after their slot
  for (int i = 0; i < a.count; ++i) {
    const std::int64_t slot = t0 + static_cast<std::int64_t>(i * interval_ns);
    bench::sleep_until_ns(slot);
    const std::int64_t now = bench::realtime_ns();
    if (now - slot > static_cast<std::int64_t>(interval_ns)) ++late;
    bench::exec(pub.get(), "SELECT pg_notify($1, $2)",
                {a.channel, head + std::to_string(i) + mid + std::to_string(now) + "}}"});
  }
  const double publish_s = static_cast<double>(bench::realtime_ns() - t0) / 1e9;

  // Wait for every task's record.
  std::vector<bench::StampRecord> mine;
  auto deadline = bench::Clock::now() + std::chrono::duration<double>(a.timeout);
  while (true) {
    mine.clear();
    for (const auto& r : read_records(a.stamp_file))
      if (index_of(std::string_view(r.uuid, strnlen(r.uuid, sizeof r.uuid)), a.tag) >= 0)
        mine.push_back(r);
    if (static_cast<long>(mine.size()) >= a.count || bench::Clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  listener.join();

  std::vector<double> pub_start, recv_start, pub_recv, read_start;
  for (const auto& r : mine) {
    long i = index_of(std::string_view(r.uuid, strnlen(r.uuid, sizeof r.uuid)), a.tag);
    pub_start.push_back(static_cast<double>(r.start_ns - r.pub_ns) / 1e3);
    if (r.added_ns > 0) read_start.push_back(static_cast<double>(r.added_ns) / 1e3);
    std::int64_t rcv = i < a.count ? received[static_cast<std::size_t>(i)] : 0;
    if (rcv > 0) {
      recv_start.push_back(static_cast<double>(r.start_ns - rcv) / 1e3);
      pub_recv.push_back(static_cast<double>(rcv - r.pub_ns) / 1e3);
    }
  }
  nlohmann::json out = {{"rate", a.rate},
                        {"count", a.count},
                        {"started", mine.size()},
                        {"publish_seconds", publish_s},
                        {"achieved_rate", a.count / publish_s},
                        {"late_sends", late},
                        {"publish_to_start", percentiles(pub_start)},
                        {"read_to_start", percentiles(read_start)},
                        {"receive_to_start", percentiles(recv_start)},
                        {"publish_to_receive", percentiles(pub_recv)}};
  std::printf("%s\n", out.dump().c_str());
  return static_cast<long>(mine.size()) >= a.count ? 0 : 1;
}
