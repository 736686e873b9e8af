#pragma once
// The worker pool (upstream-spec §7): worker records and their lifecycle states, the FIFO
// queue of tasks waiting for a free worker, least-recently-used worker choice, timeouts and
// cancel with SIGKILL escalation, death handling, scaling, and graceful stop.
//
// Growth rule: whenever tasks wait, the pool asks for enough new workers at once to give every
// waiting task a worker (up to max_workers), with at most kMaxPendingSpawns forks in flight.
// Shrink rule: a worker idle for longer than scaledown_wait is stopped while more than
// min_workers remain. A worker that dies soon after start delays the next fork with an
// exponential backoff (0.1 s doubling to 10 s) instead of fork-storming.
//
// Prefetch rule: when every worker is busy and tasks wait, a worker whose current task is
// expected to end within kPrefetchMaxRunSeconds (its task name's recent run time, and how long
// it has run so far) is sent the head of the queue in advance. The worker then starts it as
// soon as its current task ends, without waiting for main's round trip; a burst of short tasks
// costs one wake-up per task instead of two. A prefetched task counts as queued (listing,
// cancel, scaling) until it starts; a cancel reaches it through the worker, which then never
// starts it; a worker that dies first gives it back to the head of the queue.

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/message.h"
#include "dispatcherd/pool/ipc.h"
#include "dispatcherd/pool/launcher.h"
#include "dispatcherd/pool/queued_task.h"
#include "dispatcherd/processors/blocker.h"

namespace dispatcherd {

/// Lifecycle of a worker record (§7.1).
enum class WorkerStatus { Initialized, Spawned, Starting, Ready, Stopping, Exited, Retired, Error };
/// The wire name of a status ("ready", ...).
const char* worker_status_name(WorkerStatus s);

/// How a task ended, as main accounts it.
enum class TaskOutcome { Succeeded, Failed, Cancelled, TimedOut, WorkerDied };

/// Pool settings (from service.pool_kwargs and extensions).
struct PoolOptions {
  int min_workers = 1;
  int max_workers = 4;
  double scaledown_wait = 15;
  double scaledown_interval = 15;
  double worker_removal_wait = 30;
  std::optional<double> worker_max_lifetime;
  double cancel_grace = 5;
  std::size_t max_queued = 1000000;
  std::size_t max_blocked = 100000;
  std::size_t max_tasks_per_worker = 0;
  std::size_t max_worker_rss_kb = 0;  ///< recycle a worker whose RSS is above this (0 = never)
  bool prefetch = true;               ///< send one more short task to a busy worker (see above)
};

/// Counters of §7.9 plus ours.
struct PoolCounters {
  std::uint64_t finished = 0;  ///< every ended task (upstream finished_count + canceled_count)
  std::uint64_t upstream_finished = 0;  ///< upstream's finished_count (not cancelled)
  std::uint64_t canceled = 0;           ///< upstream's canceled_count
  /// Ours, one per ended task; `cancelled` includes tasks a cancel removed before they started.
  std::uint64_t succeeded = 0, failed = 0, cancelled = 0, timed_out = 0, worker_died = 0;
  std::uint64_t queue_overflow = 0;
  std::uint64_t retirements = 0;
  std::uint64_t recycles = 0;
  std::uint64_t spawn_failures = 0;
  std::uint64_t worker_deaths = 0;
};

/// Runs tasks on worker processes obtained from a WorkerLauncher. Single-threaded, on the loop.
class WorkerPool {
 public:
  /// The worker id `Hooks::finished` gets for a task that ended without ever starting.
  static constexpr int kNotStarted = -1;
  /// What the pool tells its owner.
  struct Hooks {
    /// A task ended (after the pool's own bookkeeping); `done` is null when the worker died.
    std::function<void(const QueuedTask&, TaskOutcome, const ipc::DonePayload* done, int worker_id)>
        finished;
    /// A task was handed to a worker at `now` (for the start-latency histogram).
    std::function<void(const QueuedTask&, MonoTime now)> started;
    /// A bound task called control (§4.5); returns the reply JSON text.
    std::function<std::string(int worker_id, std::string_view request_json)> control;
  };

  WorkerPool(EventLoop& loop, WorkerLauncher& launcher, PoolOptions options, Hooks hooks);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Creates min_workers workers and starts the maintenance timer.
  void start();
  /// What submit() did with a task.
  enum class Admission { Dispatched, Queued, Held, Discarded, Refused };
  /// Passes `t` through the Blocker (§8.1), then runs it on a free worker or queues it.
  /// Refused (and counted) when the queue is full or the pool is shutting down.
  Admission submit(QueuedTask t);
  /// Cancels the running task with `uuid` (SIGUSR1, then SIGKILL after the grace period).
  bool cancel_running(const std::string& uuid);
  /// Counts `n` tasks that a cancel removed before they started (queued, held or delayed)
  /// as cancelled, so every task ends in exactly one of our outcome counters.
  void count_cancelled_unstarted(std::size_t n) { counters_.cancelled += n; }
  /// Removes queued tasks for which `match` is true; returns them. Prefetched tasks that match
  /// are not returned: they are cancelled through their worker and end as cancelled there.
  std::vector<QueuedTask> remove_queued(const std::function<bool(const QueuedTask&)>& match);
  /// Removes tasks held by the Blocker for which `match` is true; returns them.
  std::vector<QueuedTask> remove_held(const std::function<bool(const QueuedTask&)>& match);
  /// The duplicate blocker (held tasks and its counters).
  const Blocker& blocker() const { return blocker_; }
  /// Stops accepting work and stops every worker: running tasks get `grace` seconds, then are
  /// cancelled, then killed after cancel_grace. `done` runs when every process has exited.
  void shutdown(double grace, std::function<void()> done);
  /// Applies new pool sizes (SIGHUP reload).
  void resize(int min_workers, int max_workers);

  /// `workers` control command body (§4.4).
  nlohmann::json workers_json(MonoTime now) const;
  /// Running tasks in worker LRU order as (worker id, task).
  std::vector<std::pair<int, const QueuedTask*>> running() const;
  /// Calls `fn` for every task waiting to start, head first: prefetched tasks (in worker LRU
  /// order), then the queue.
  void for_each_queued(const std::function<void(const QueuedTask&)>& fn) const;
  /// Tasks waiting to start: the queue plus prefetched tasks.
  std::size_t queued_count() const { return queue_.size() + prefetched_; }
  /// Counters so far.
  const PoolCounters& counters() const { return counters_; }
  /// Next worker id (§7.1), for the `main` command.
  int next_worker_id() const { return next_id_; }
  /// Number of worker records in any state (dispatcher_worker_count_total).
  std::size_t record_count() const { return workers_.size(); }
  /// Workers per status name.
  std::map<std::string, int> status_counts() const;
  /// Tasks running now.
  std::size_t busy_count() const;

 private:
  struct Worker;

  Worker* find_by_pid(pid_t pid);
  void on_started(int id, pid_t pid, Fd to, Fd from);
  void on_start_failed(int id, const std::string& error);
  void on_exited(pid_t pid, int status);
  void on_readable(Worker& w);
  void on_writable(Worker& w);
  void handle_frame(Worker& w, ipc::Frame& f);
  void handle_done(Worker& w, ipc::Frame& f);
  void finish_task(Worker& w, TaskOutcome outcome, const ipc::DonePayload* done);
  void send(Worker& w, ipc::FrameType type, std::uint64_t seq, std::string_view payload);
  // Sends task `t` as frame `seq`, encoded straight into the worker's output buffer.
  void send_task(Worker& w, std::uint64_t seq, const QueuedTask& t);
  void dispatch(Worker& w, QueuedTask t);
  void prefetch_to_busy_workers();
  bool expected_short(const Worker& w, MonoTime now) const;
  void start_current(Worker& w);
  void requeue_prefetched(Worker& w);
  Worker* free_worker();
  void drain_queue();
  void cancel_task(Worker& w, bool timeout);
  void stop_worker(Worker& w);
  void scale_up();
  void spawn_one();
  void maintain();
  int capacity() const;

  EventLoop& loop_;
  WorkerLauncher& launcher_;
  PoolOptions opt_;
  Hooks hooks_;
  std::map<int, std::unique_ptr<Worker>> workers_;
  std::vector<int> order_;  // LRU: least recently used first
  std::deque<QueuedTask> queue_;
  std::size_t prefetched_ = 0;        // tasks sent ahead to busy workers, not started yet
  std::size_t queue_high_water_ = 0;  // longest queue since the heap was last trimmed
  // Recent run time in seconds per task name (an exponential average), for the prefetch rule.
  // Keyed by task name and looked up with the QueuedTask's string_view, without a copy.
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, double, NameHash, std::equal_to<>> run_time_;
  Blocker blocker_;
  PoolCounters counters_;
  int next_id_ = 0;
  int pending_spawns_ = 0;
  int quick_deaths_ = 0;  // consecutive workers that died soon after start
  MonoTime spawn_not_before_ = 0;
  EventLoop::TimerId spawn_timer_ = 0;
  EventLoop::TimerId maintain_timer_ = 0;
  bool shutting_down_ = false;
  std::function<void()> shutdown_done_;
};

}  // namespace dispatcherd
