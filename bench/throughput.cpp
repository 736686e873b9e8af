// bench_throughput: publishes a burst of no-op tasks to a running dispatcherd and measures how
// fast it runs them, next to the pg_notify transport ceiling measured in the same run.
//
//   bench_throughput --dsn DSN --channel CH --pid MAIN_PID [--count 20000] [--batch 100]
//                    [--method batch|single|lib] [--payload 200] [--ceiling-count N]
//                    [--task NAME] [--tag T] [--stamp-file F]
//
// --method batch: `batch` pg_notify calls per statement (payloads made by the server);
// single: one statement (and transaction) per task; lib: dispatcherd::Publisher, `batch`
// messages per pipelined transaction, chunked above 7999 bytes. The ceiling is the same burst
// (ceiling-count tasks, default count; 0 skips it) published the same way on another channel
// and received by a bare LISTEN connection: what the transport allows on this machine now.
// End to end: from the start of publishing until the last task started. With --stamp-file the
// last of the `count` tasks is a `bench.stamp` task (bench/tasks.cpp) and its record in F gives
// that moment without asking the service anything during the burst (the service runs its
// queue in order, so it starts after every other task did); without it, until the finished
// count of the `main` control reply, polled every 5 ms, has grown by count (each poll costs
// main a little). Either way the finished count is checked at the end. CPU per task: main, and
// every descendant of main (zygote and workers), from /proc/<pid>/schedstat.
// Prints one JSON object.
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "support.h"

namespace {

using bench::Clock;

struct Args {
  std::string dsn, channel, task = "dispatcherd.builtin.noop", tag, stamp_file;
  pid_t pid = 0;
  int count = 20000, batch = 100, payload = 200, ceiling_count = -1;
  bench::Method method = bench::Method::Batch;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--dsn")
      a.dsn = v;
    else if (k == "--channel")
      a.channel = v;
    else if (k == "--pid")
      a.pid = std::atoi(v.c_str());
    else if (k == "--count")
      a.count = std::atoi(v.c_str());
    else if (k == "--batch")
      a.batch = std::max(1, std::atoi(v.c_str()));
    else if (k == "--payload")
      a.payload = std::atoi(v.c_str());
    else if (k == "--ceiling-count")
      a.ceiling_count = std::atoi(v.c_str());
    else if (k == "--method")
      a.method = bench::parse_method(v);
    else if (k == "--task")
      a.task = v;
    else if (k == "--tag")
      a.tag = v;
    else if (k == "--stamp-file")
      a.stamp_file = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (a.dsn.empty() || a.channel.empty() || a.pid <= 0 || a.count <= 0) {
    std::fprintf(stderr,
                 "usage: bench_throughput --dsn DSN --channel CH --pid PID [--count N] [--batch B]"
                 " [--method batch|single|lib] [--payload BYTES] [--ceiling-count N]\n");
    std::exit(2);
  }
  if (a.ceiling_count < 0) a.ceiling_count = a.count;
  if (a.tag.empty()) a.tag = std::string("t").append(std::to_string(getpid()));
  return a;
}

bench::Burst burst_of(const Args& a, const std::string& channel, int count, std::string tag) {
  bench::Burst b;
  b.channel = channel;
  b.count = count;
  b.batch = a.method == bench::Method::Single ? 1 : a.batch;
  b.payload = a.payload;
  b.task = a.task;
  b.tag = std::move(tag);
  b.method = a.method;
  b.conninfo = a.dsn;
  return b;
}

struct Ceiling {
  double tasks_per_s = 0;
  double notifications_per_s = 0;
};

// The same burst on a channel nobody else listens to, received by one bare LISTEN connection
// that waits in poll() like the service does.
Ceiling ceiling(const Args& a) {
  bench::Conn listener = bench::connect(a.dsn), pub = bench::connect(a.dsn);
  std::string ch = "bench_ceiling_" + std::to_string(getpid());
  bench::exec(listener.get(), "LISTEN \"" + ch + "\"");
  std::atomic<long> sent{-1};
  auto t0 = Clock::now();
  std::thread t([&] { sent = bench::publish(pub.get(), burst_of(a, ch, a.ceiling_count, "c")); });
  long got = 0;
  auto last = t0;  // when the last notification arrived
  while (sent.load() < 0 || got < sent.load()) {
    pollfd p{PQsocket(listener.get()), POLLIN, 0};
    poll(&p, 1, 10);
    PQconsumeInput(listener.get());
    while (PGnotify* n = PQnotifies(listener.get())) {
      ++got;
      last = Clock::now();
      PQfreemem(n);
    }
  }
  double s = bench::secs(t0, last);
  t.join();
  return {a.ceiling_count / s, static_cast<double>(got) / s};
}

struct Cpu {
  double main = 0, children = 0;
};

Cpu cpu(pid_t main_pid) {
  Cpu c{bench::cpu_of(main_pid), 0};
  for (pid_t p : bench::descendants(main_pid)) c.children += bench::cpu_of(p);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  Ceiling ceil;
  if (a.ceiling_count > 0) ceil = ceiling(a);

  bench::Conn ctl = bench::connect(a.dsn), pub = bench::connect(a.dsn);
  bench::FinishedPoller finished(ctl.get(), a.channel);
  long base = finished.get();
  if (base < 0) {
    std::fprintf(stderr, "the service did not answer `main`\n");
    return 1;
  }
  const std::size_t procs = bench::descendants(a.pid).size();
  const bool stamped = !a.stamp_file.empty() && a.count >= 2;
  Cpu c0 = cpu(a.pid);
  const std::int64_t t0 = bench::realtime_ns();
  long notifications =
      bench::publish(pub.get(), burst_of(a, a.channel, stamped ? a.count - 1 : a.count, a.tag));
  if (stamped) {
    bench::publish_stamp(pub.get(), a.channel, a.tag + "-last", a.stamp_file);
    ++notifications;
  }
  double publish_s = static_cast<double>(bench::realtime_ns() - t0) / 1e9;
  double elapsed = 0;
  long done = base;
  if (stamped) {
    std::int64_t last = bench::wait_stamp(a.stamp_file, a.tag + "-last", 300);
    elapsed = static_cast<double>((last > 0 ? last : bench::realtime_ns()) - t0) / 1e9;
  } else {
    while (done < base + a.count && static_cast<double>(bench::realtime_ns() - t0) / 1e9 < 300) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      done = finished.get();
    }
    elapsed = static_cast<double>(bench::realtime_ns() - t0) / 1e9;
  }
  Cpu c1 = cpu(a.pid);
  // Every task accounted for (the last few no-ops may still be finishing).
  for (int i = 0; i < 600 && done < base + a.count; ++i) {
    done = finished.get();
    if (done < base + a.count) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  double rate = static_cast<double>(std::min<long>(done - base, a.count)) / elapsed;
  nlohmann::json out = {{"tasks", done - base},
                        {"method", a.method == bench::Method::Batch    ? "batch"
                                   : a.method == bench::Method::Single ? "single"
                                                                       : "lib"},
                        {"batch", a.method == bench::Method::Single ? 1 : a.batch},
                        {"payload_bytes", a.payload},
                        {"notifications", notifications},
                        {"seconds", elapsed},
                        {"publish_seconds", publish_s},
                        {"end_detection", stamped ? "stamp" : "poll"},
                        {"tasks_per_s", rate},
                        {"main_cpu_us_per_task", (c1.main - c0.main) * 1e6 / a.count},
                        {"worker_cpu_us_per_task", (c1.children - c0.children) * 1e6 / a.count},
                        {"child_processes", procs}};
  if (a.ceiling_count > 0) {
    out["ceiling_count"] = a.ceiling_count;
    out["ceiling_per_s"] = ceil.tasks_per_s;
    out["ceiling_notifications_per_s"] = ceil.notifications_per_s;
    out["fraction_of_ceiling"] = rate / ceil.tasks_per_s;
  }
  std::printf("%s\n", out.dump().c_str());
  return done - base >= a.count ? 0 : 1;
}
