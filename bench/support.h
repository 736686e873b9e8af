#pragma once
// What the bench tools share: a blocking libpq connection, the three ways they publish a burst
// of tasks (100 per statement, one statement per task, the C++ Publisher), the `main` control
// query they poll for the finished count, and per-process CPU time from /proc. Measurement
// tools only: errors print a line and exit(1).

#include <libpq-fe.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bench {

using Clock = std::chrono::steady_clock;
using Conn = std::unique_ptr<PGconn, decltype(&PQfinish)>;

/// Seconds from a to b.
double secs(Clock::time_point a, Clock::time_point b);
/// CLOCK_REALTIME in nanoseconds: the clock every stamp of the bench uses, across processes.
std::int64_t realtime_ns();
/// Sleeps until CLOCK_REALTIME reaches t_ns.
void sleep_until_ns(std::int64_t t_ns);

/// Connects or exits with libpq's message.
Conn connect(const std::string& dsn);
/// Runs one statement with text parameters; exits on error.
void exec(PGconn* c, const std::string& sql, const std::vector<std::string>& params = {});

/// How a burst is published.
enum class Method {
  Batch,    ///< `batch` pg_notify calls in one statement (payloads made by the server)
  Single,   ///< one `SELECT pg_notify($1, $2)` statement (and transaction) per task
  Library,  ///< dispatcherd::Publisher::publish_batch, `batch` messages per pipelined
            ///< transaction; messages above 7999 bytes go out as v1 chunks
};
/// "batch", "single" or "lib"; exits on anything else.
Method parse_method(const std::string& name);

/// A burst of `count` tasks named `task`, uuids "<tag>-<i>", each message about `payload`
/// bytes (padded with a kwargs "pad" string).
struct Burst {
  std::string channel;
  int count = 0;
  int batch = 100;
  int payload = 200;
  std::string task = "dispatcherd.builtin.noop";
  std::string tag = "t";
  Method method = Method::Batch;
  std::string conninfo;  ///< used by Method::Library, which opens its own connection
};

/// Publishes the burst on `c` (Batch, Single) or on a Publisher of its own (Library).
/// Returns the number of notifications sent (more than count when messages were chunked).
long publish(PGconn* c, const Burst& b);

/// Publishes one `bench.stamp` task (bench/tasks.cpp) recording into `file`, in its own
/// statement.
void publish_stamp(PGconn* c, const std::string& channel, const std::string& uuid,
                   const std::string& file);
/// Waits until the stamp file `file` holds a record for `uuid`; returns its start time
/// (CLOCK_REALTIME ns), or -1 after `timeout_s`.
std::int64_t wait_stamp(const std::string& file, const std::string& uuid, double timeout_s);

/// Asks the service for its finished count with `main` control requests over pg_notify.
class FinishedPoller {
 public:
  /// LISTENs on a reply channel of its own on `c` (used only for this from now on).
  FinishedPoller(PGconn* c, std::string channel);
  /// pool.finished_count + canceled_count from one `main` request; -1 when no reply came
  /// within 10 s.
  long get();

 private:
  PGconn* c_;
  std::string channel_, reply_to_;
};

/// CPU seconds (user + system) one process has used: /proc/<pid>/schedstat (nanoseconds),
/// else /proc/<pid>/stat (clock ticks). 0 when the process is gone.
double cpu_of(pid_t pid);
/// Every descendant of `pid` (children, their children, ...) from /proc/<pid>/task/*/children.
std::vector<pid_t> descendants(pid_t pid);

}  // namespace bench
