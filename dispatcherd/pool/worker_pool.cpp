#include "dispatcherd/pool/worker_pool.h"

#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "dispatcherd/log.h"

namespace dispatcherd {

namespace {
constexpr int kMaxPendingSpawns = 8;  // forks in flight at once
constexpr double kQuickDeathSeconds =
    2;  // dying sooner than this after start counts as a crash loop
constexpr std::size_t kReadChunk = 65536;
// A busy worker gets a task in advance only when its current one should end within this:
// for longer tasks one saved round trip is noise, and a task stuck behind a long one would
// wait while another worker may free up first.
constexpr double kPrefetchMaxRunSeconds = 0.001;
// How many task names the run-time averages remember (names come from messages).
constexpr std::size_t kMaxRunTimeNames = 1024;
// A queue that grew past this many tasks leaves enough freed heap behind to be worth handing
// back to the kernel once it is empty again.
constexpr std::size_t kTrimAfterQueuedTasks = 1000;

// Resident set size of `pid` in kB from /proc/PID/statm, or 0 when unreadable.
std::size_t rss_kb(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  std::FILE* f = std::fopen(path, "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) / 1024;
}
}  // namespace

const char* worker_status_name(WorkerStatus s) {
  switch (s) {
    case WorkerStatus::Initialized:
      return "initialized";
    case WorkerStatus::Spawned:
      return "spawned";
    case WorkerStatus::Starting:
      return "starting";
    case WorkerStatus::Ready:
      return "ready";
    case WorkerStatus::Stopping:
      return "stopping";
    case WorkerStatus::Exited:
      return "exited";
    case WorkerStatus::Retired:
      return "retired";
    case WorkerStatus::Error:
      return "error";
  }
  return "error";
}

struct WorkerPool::Worker {
  int id = 0;
  pid_t pid = -1;
  WorkerStatus status = WorkerStatus::Initialized;
  Fd to, from;
  std::string out;  // frames not yet written
  ipc::FrameReader reader;
  std::optional<QueuedTask> current;
  std::optional<QueuedTask> next;  // prefetched: written already, starts when current ends
  bool next_cancelled = false;     // a cancel reached `next` before it started
  std::uint64_t seq = 0;           // current's; next has seq + 1
  MonoTime created_at = 0;
  MonoTime started_at = 0;  // current task
  MonoTime idle_since = 0;
  std::uint64_t finished_count = 0;
  bool active_cancel = false;
  bool cancel_is_timeout = false;
  bool killed_by_us = false;
  EventLoop::TimerId timeout_timer = 0, kill_timer = 0, removal_timer = 0;
};

WorkerPool::WorkerPool(EventLoop& loop, WorkerLauncher& launcher, PoolOptions options, Hooks hooks)
    : loop_(loop),
      launcher_(launcher),
      opt_(options),
      hooks_(std::move(hooks)),
      blocker_(options.max_blocked) {
  if (opt_.max_workers < opt_.min_workers) opt_.max_workers = opt_.min_workers;
  WorkerLauncher::Events ev;
  ev.started = [this](int id, pid_t pid, Fd to, Fd from) {
    on_started(id, pid, std::move(to), std::move(from));
  };
  ev.start_failed = [this](int id, const std::string& e) { on_start_failed(id, e); };
  ev.exited = [this](pid_t pid, int status) { on_exited(pid, status); };
  launcher_.set_events(std::move(ev));
}

WorkerPool::~WorkerPool() {
  for (auto& [id, w] : workers_) {
    if (w->from.valid()) loop_.unwatch(w->from.get());
    if (w->to.valid()) loop_.unwatch(w->to.get());
    for (auto t : {w->timeout_timer, w->kill_timer, w->removal_timer})
      if (t) loop_.cancel(t);
  }
  if (spawn_timer_) loop_.cancel(spawn_timer_);
  if (maintain_timer_) loop_.cancel(maintain_timer_);
}

void WorkerPool::start() {
  scale_up();
  maintain_timer_ = loop_.after(std::max(0.05, opt_.scaledown_interval), [this] { maintain(); });
}

int WorkerPool::capacity() const {
  int n = 0;
  for (auto& [id, w] : workers_)
    if (w->status <= WorkerStatus::Ready) ++n;
  return n;
}

std::size_t WorkerPool::busy_count() const {
  std::size_t n = 0;
  for (auto& [id, w] : workers_)
    if (w->current) ++n;
  return n;
}

void WorkerPool::scale_up() {
  if (shutting_down_) return;
  int cap = capacity();
  int busy = static_cast<int>(busy_count());
  int want = std::max(opt_.min_workers,
                      std::min(opt_.max_workers, busy + static_cast<int>(queued_count())));
  int missing = want - cap;
  if (missing <= 0) return;
  if (cap >= opt_.max_workers && !queue_.empty()) {
    LOG_DEBUG("System at max_workers="
              << opt_.max_workers << " and queue pressure detected, capacity may be insufficient");
  }
  MonoTime now = loop_.now();
  if (now < spawn_not_before_) {
    if (!spawn_timer_)
      spawn_timer_ = loop_.at(spawn_not_before_, [this] {
        spawn_timer_ = 0;
        scale_up();
      });
    return;
  }
  while (missing-- > 0 && pending_spawns_ < kMaxPendingSpawns) spawn_one();
}

void WorkerPool::spawn_one() {
  auto w = std::make_unique<Worker>();
  w->id = next_id_++;
  w->created_at = loop_.now();
  w->status = WorkerStatus::Spawned;
  int id = w->id;
  workers_[id] = std::move(w);
  order_.push_back(id);
  ++pending_spawns_;
  launcher_.launch(id);
}

void WorkerPool::on_started(int id, pid_t pid, Fd to, Fd from) {
  --pending_spawns_;
  auto it = workers_.find(id);
  if (it == workers_.end()) {
    LOG_ERROR("launcher reported unknown worker id " << id << " pid=" << pid);
    launcher_.signal(pid, SIGKILL, 0);
    return;
  }
  Worker& w = *it->second;
  w.pid = pid;
  w.status = WorkerStatus::Starting;
  w.to = std::move(to);
  w.from = std::move(from);
  loop_.watch(w.from.get(), kReadable, [this, id](std::uint32_t) {
    auto i = workers_.find(id);
    if (i != workers_.end()) on_readable(*i->second);
  });
  LOG_DEBUG("worker " << id << " started, pid=" << pid);
  if (shutting_down_) {
    stop_worker(w);
    return;
  }
  scale_up();  // forks capped by kMaxPendingSpawns may continue now
}

void WorkerPool::on_start_failed(int id, const std::string& error) {
  --pending_spawns_;
  ++counters_.spawn_failures;
  ++quick_deaths_;
  LOG_ERROR("worker " << id << " could not be started: " << error);
  auto it = workers_.find(id);
  if (it != workers_.end()) {
    it->second->status = WorkerStatus::Error;
    it->second->removal_timer = loop_.after(opt_.worker_removal_wait, [this, id] {
      workers_.erase(id);
      order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
    });
  }
  spawn_not_before_ = loop_.now() + std::min(10.0, 0.1 * (1 << std::min(quick_deaths_, 7)));
  scale_up();
}

WorkerPool::Worker* WorkerPool::find_by_pid(pid_t pid) {
  for (auto& [id, w] : workers_)
    if (w->pid == pid) return w.get();
  return nullptr;
}

void WorkerPool::on_readable(Worker& w) {
  char buf[kReadChunk];
  while (w.from.valid()) {
    ssize_t n = ::read(w.from.get(), buf, sizeof buf);
    if (n > 0) {
      w.reader.feed(buf, static_cast<std::size_t>(n));
      while (auto f = w.reader.next()) handle_frame(w, *f);
      if (w.reader.corrupt()) {
        LOG_ERROR("worker " << w.id << " sent a corrupt frame; killing it");
        launcher_.signal(w.pid, SIGKILL, 0);
        loop_.unwatch(w.from.get());
        w.from.reset();
      }
      if (static_cast<std::size_t>(n) < sizeof buf) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    // EOF or error: the worker is exiting; its exit report does the rest.
    loop_.unwatch(w.from.get());
    w.from.reset();
    return;
  }
}

void WorkerPool::handle_frame(Worker& w, ipc::Frame& f) {
  switch (f.type) {
    case ipc::FrameType::kReady:
      if (w.status == WorkerStatus::Starting) w.status = WorkerStatus::Ready;
      w.idle_since = loop_.now();
      drain_queue();
      break;
    case ipc::FrameType::kDone:
      handle_done(w, f);
      break;
    case ipc::FrameType::kControl: {
      std::string reply = hooks_.control ? hooks_.control(w.id, f.payload)
                                         : R"({"error": "Failed to run control task"})";
      send(w, ipc::FrameType::kControlReply, f.seq, reply);
      break;
    }
    case ipc::FrameType::kShutdown:
      w.status = WorkerStatus::Exited;
      break;
    default:
      LOG_ERROR("worker " << w.id << " sent unexpected frame type " << static_cast<int>(f.type));
  }
}

void WorkerPool::handle_done(Worker& w, ipc::Frame& f) {
  auto done = ipc::decode_done(f.payload);
  if (!done) {
    LOG_ERROR("worker " << w.id << " sent a malformed done event");
    return;
  }
  if (!w.current || f.seq != w.seq) {
    // A done for a task already accounted (e.g. after a kill raced with it): ignore.
    LOG_WARNING("worker " << w.id << " reported done for stale task seq " << f.seq);
    return;
  }
  TaskOutcome outcome = TaskOutcome::Succeeded;
  if (done->status == ipc::TaskStatus::kFailed) outcome = TaskOutcome::Failed;
  if (done->status == ipc::TaskStatus::kCancelled)
    outcome = w.cancel_is_timeout ? TaskOutcome::TimedOut : TaskOutcome::Cancelled;
  if (done->is_stopping && w.status == WorkerStatus::Ready) w.status = WorkerStatus::Stopping;
  // A worker that stops after this task will not read its prefetched one: give it back.
  if (done->is_stopping) requeue_prefetched(w);
  if (outcome == TaskOutcome::Succeeded || outcome == TaskOutcome::Failed) {
    double ran = std::max(0.0, done->time_finish - done->time_started);
    auto it = run_time_.find(w.current->task());
    if (it != run_time_.end())
      it->second = 0.8 * it->second + 0.2 * ran;
    else if (run_time_.size() < kMaxRunTimeNames)
      run_time_.emplace(w.current->task(), ran);
  }
  finish_task(w, outcome, &*done);
}

void WorkerPool::finish_task(Worker& w, TaskOutcome outcome, const ipc::DonePayload* done) {
  for (auto* t : {&w.timeout_timer, &w.kill_timer}) {
    if (*t) loop_.cancel(*t);
    *t = 0;
  }
  QueuedTask task = std::move(*w.current);
  w.current.reset();
  blocker_.deactivated(task.identity);
  bool was_cancel_sent = w.active_cancel;
  w.active_cancel = false;
  w.cancel_is_timeout = false;
  // A worker that finished a task proves that workers can start and run again: forget earlier
  // quick deaths and spawn failures, so a later transient failure backs off from 0.1 s.
  if (w.finished_count++ == 0) quick_deaths_ = 0;
  w.idle_since = loop_.now();
  ++counters_.finished;
  switch (outcome) {
    case TaskOutcome::Succeeded:
      ++counters_.succeeded;
      break;
    case TaskOutcome::Failed:
      ++counters_.failed;
      break;
    case TaskOutcome::Cancelled:
      ++counters_.cancelled;
      break;
    case TaskOutcome::TimedOut:
      ++counters_.timed_out;
      break;
    case TaskOutcome::WorkerDied:
      ++counters_.worker_died;
      break;
  }
  bool upstream_cancel = (was_cancel_sent && (outcome == TaskOutcome::Cancelled ||
                                              outcome == TaskOutcome::TimedOut)) ||
                         outcome == TaskOutcome::WorkerDied;
  if (upstream_cancel)
    ++counters_.canceled;
  else
    ++counters_.upstream_finished;
  // LRU: the worker that just finished goes to the back.
  order_.erase(std::remove(order_.begin(), order_.end(), w.id), order_.end());
  order_.push_back(w.id);
  if (opt_.max_tasks_per_worker > 0 && w.finished_count >= opt_.max_tasks_per_worker &&
      w.status == WorkerStatus::Ready) {
    LOG_INFO("worker " << w.id << " ran " << w.finished_count << " tasks; recycling it");
    ++counters_.recycles;
    stop_worker(w);
  } else if (opt_.max_worker_rss_kb > 0 && w.status == WorkerStatus::Ready && w.pid > 0) {
    // Checked between tasks only, so the cost (one /proc read) is paid only when configured.
    std::size_t rss = rss_kb(w.pid);
    if (rss > opt_.max_worker_rss_kb) {
      LOG_INFO("worker " << w.id << " uses " << rss / 1024 << " MB RSS (limit "
                         << opt_.max_worker_rss_kb / 1024 << " MB); recycling it");
      ++counters_.recycles;
      stop_worker(w);
    }
  }
  // The prefetched task is already in the worker's pipe: it starts now.
  if (w.next) {
    if (!w.next_cancelled) --prefetched_;
    bool cancelled = w.next_cancelled;
    w.next_cancelled = false;
    w.current = std::move(w.next);
    w.next.reset();
    w.seq += 1;
    start_current(w);
    if (cancelled) cancel_task(w, false);  // the worker skips it, or stops it if it began
  }
  if (hooks_.finished) hooks_.finished(task, outcome, done, w.id);
  drain_queue();
  scale_up();
}

void WorkerPool::requeue_prefetched(Worker& w) {
  if (!w.next) return;
  QueuedTask t = std::move(*w.next);
  bool cancelled = w.next_cancelled;
  w.next.reset();
  w.next_cancelled = false;
  if (cancelled) {
    // Already listed as cancelled to whoever asked; it ends here without having started.
    blocker_.deactivated(t.identity);
    ++counters_.cancelled;
    if (hooks_.finished) hooks_.finished(t, TaskOutcome::Cancelled, nullptr, kNotStarted);
    return;
  }
  --prefetched_;
  queue_.push_front(std::move(t));  // it never started: it keeps its place at the head
}

void WorkerPool::send(Worker& w, ipc::FrameType type, std::uint64_t seq, std::string_view payload) {
  if (!w.to.valid()) return;
  bool was_empty = w.out.empty();
  ipc::append_frame(w.out, type, seq, payload);
  if (was_empty) on_writable(w);
}

void WorkerPool::send_task(Worker& w, std::uint64_t seq, const QueuedTask& t) {
  if (!w.to.valid()) return;
  bool was_empty = w.out.empty();
  ipc::append_task_frame(w.out, seq, {t.uuid(), t.channel(), t.body(), t.received_at});
  if (was_empty) on_writable(w);
}

void WorkerPool::on_writable(Worker& w) {
  while (!w.out.empty() && w.to.valid()) {
    ssize_t n = ::write(w.to.get(), w.out.data(), w.out.size());
    if (n > 0) {
      w.out.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      int id = w.id;
      loop_.watch(w.to.get(), kWritable, [this, id](std::uint32_t) {
        auto i = workers_.find(id);
        if (i != workers_.end()) on_writable(*i->second);
      });
      return;
    }
    // EPIPE: the worker is gone; its exit report handles the task.
    w.out.clear();
    break;
  }
  if (w.to.valid()) loop_.unwatch(w.to.get());
}

WorkerPool::Worker* WorkerPool::free_worker() {
  for (int id : order_) {
    Worker& w = *workers_.at(id);
    // A worker whose exit is being handled still reads Ready while its task is accounted
    // (on_exited → finish_task → drain_queue); its pipe is already closed, so skip it, or the
    // next queued task would be handed to a dead process and lost.
    if (w.status == WorkerStatus::Ready && !w.current && w.to.valid()) return &w;
  }
  return nullptr;
}

void WorkerPool::dispatch(Worker& w, QueuedTask t) {
  w.seq += 1;
  w.current = std::move(t);
  start_current(w);
  send_task(w, w.seq, *w.current);
}

// Bookkeeping for the moment w.current starts: its timeout clock and the start hook.
void WorkerPool::start_current(Worker& w) {
  w.started_at = loop_.now();
  w.active_cancel = false;
  w.cancel_is_timeout = false;
  const QueuedTask& t = *w.current;
  if (t.timeout > 0) {
    int id = w.id;
    std::uint64_t seq = w.seq;
    w.timeout_timer = loop_.after(t.timeout, [this, id, seq] {
      auto i = workers_.find(id);
      if (i == workers_.end() || !i->second->current || i->second->seq != seq) return;
      Worker& wk = *i->second;
      wk.timeout_timer = 0;
      LOG_WARNING("Worker " << id << " runtime " << (loop_.now() - wk.started_at)
                            << "(s) for task uuid=" << wk.current->uuid() << " exceeded timeout "
                            << wk.current->timeout << "(s), canceling");
      cancel_task(wk, true);
    });
  }
  if (hooks_.started) hooks_.started(t, w.started_at);
}

bool WorkerPool::expected_short(const Worker& w, MonoTime now) const {
  if (!w.current || now - w.started_at > kPrefetchMaxRunSeconds) return false;
  auto it = run_time_.find(w.current->task());
  return it != run_time_.end() && it->second <= kPrefetchMaxRunSeconds;
}

void WorkerPool::prefetch_to_busy_workers() {
  if (!opt_.prefetch || shutting_down_ || queue_.empty()) return;
  MonoTime now = loop_.now();
  for (int id : order_) {
    if (queue_.empty()) return;
    Worker& w = *workers_.at(id);
    if (w.status != WorkerStatus::Ready || !w.current || w.next || !w.to.valid() || w.active_cancel)
      continue;
    // A worker due for recycling after its current task would never run the next one.
    if (opt_.max_tasks_per_worker > 0 && w.finished_count + 1 >= opt_.max_tasks_per_worker)
      continue;
    if (!expected_short(w, now)) continue;
    w.next = std::move(queue_.front());
    queue_.pop_front();
    ++prefetched_;
    send_task(w, w.seq + 1, *w.next);
  }
}

WorkerPool::Admission WorkerPool::submit(QueuedTask t) {
  if (shutting_down_) {
    LOG_WARNING("shutting down; task " << t.task() << " (uuid=" << t.uuid() << ") not run");
    return Admission::Refused;
  }
  switch (blocker_.admit(t)) {
    case Blocker::Decision::Hold:
      return Admission::Held;
    case Blocker::Decision::Discard:
      return Admission::Discarded;
    case Blocker::Decision::Pass:
      break;
  }
  if (queue_.empty()) {
    if (Worker* w = free_worker()) {
      blocker_.activated(t.identity);
      dispatch(*w, std::move(t));
      return Admission::Dispatched;
    }
  }
  if (queue_.size() >= opt_.max_queued) {
    ++counters_.queue_overflow;
    // Logged at the first drop and then every 10000th: a flood must not flood the log too.
    if (counters_.queue_overflow % 10000 == 1)
      LOG_ERROR("queue full (" << opt_.max_queued << " tasks); dropping task " << t.task()
                               << " (uuid=" << t.uuid() << "), " << counters_.queue_overflow
                               << " dropped so far");
    return Admission::Refused;
  }
  blocker_.activated(t.identity);
  queue_.push_back(std::move(t));
  queue_high_water_ = std::max(queue_high_water_, queue_.size());
  if (queue_.size() == 1 || queue_.size() % 10000 == 0)
    LOG_DEBUG("Queueing task (uuid=" << queue_.back().uuid()
                                     << "), due to lack of capacity, queued_ct=" << queue_.size());
  prefetch_to_busy_workers();
  scale_up();
  return Admission::Queued;
}

void WorkerPool::drain_queue() {
  if (shutting_down_) return;
  // Held duplicates whose twin has finished move to the end of the queue first (§7.4).
  for (QueuedTask& t : blocker_.release()) {
    blocker_.activated(t.identity);
    queue_.push_back(std::move(t));
  }
  while (!queue_.empty()) {
    Worker* w = free_worker();
    if (!w) break;
    QueuedTask t = std::move(queue_.front());
    queue_.pop_front();
    dispatch(*w, std::move(t));
  }
  prefetch_to_busy_workers();
}

void WorkerPool::cancel_task(Worker& w, bool timeout) {
  if (!w.current) return;
  if (!w.active_cancel) {
    w.active_cancel = true;
    w.cancel_is_timeout = timeout;
    launcher_.signal(w.pid, SIGUSR1, static_cast<int>(w.seq & 0x7fffffff));
  }
  if (w.kill_timer) return;
  int id = w.id;
  std::uint64_t seq = w.seq;
  w.kill_timer = loop_.after(opt_.cancel_grace, [this, id, seq] {
    auto i = workers_.find(id);
    if (i == workers_.end() || !i->second->current || i->second->seq != seq) return;
    Worker& wk = *i->second;
    wk.kill_timer = 0;
    LOG_WARNING("task (uuid=" << wk.current->uuid() << ") on worker " << id << " still running "
                              << opt_.cancel_grace
                              << "s after cancel; killing worker pid=" << wk.pid);
    wk.killed_by_us = true;
    launcher_.signal(wk.pid, SIGKILL, 0);
  });
}

bool WorkerPool::cancel_running(const std::string& uuid) {
  bool any = false;
  for (auto& [id, w] : workers_) {
    if (w->current && w->current->uuid() == uuid) {
      cancel_task(*w, false);
      any = true;
    }
  }
  return any;
}

std::vector<QueuedTask> WorkerPool::remove_queued(
    const std::function<bool(const QueuedTask&)>& match) {
  std::vector<QueuedTask> removed;
  std::deque<QueuedTask> keep;
  for (auto& t : queue_) {
    if (match(t)) {
      blocker_.deactivated(t.identity);
      removed.push_back(std::move(t));
    } else {
      keep.push_back(std::move(t));
    }
  }
  queue_.swap(keep);
  for (auto& [id, w] : workers_) {
    if (!w->next || w->next_cancelled || !match(*w->next)) continue;
    // Written to the worker already: it must skip it (SIGUSR1 carrying its sequence number).
    w->next_cancelled = true;
    --prefetched_;
    launcher_.signal(w->pid, SIGUSR1, static_cast<int>((w->seq + 1) & 0x7fffffff));
  }
  if (!removed.empty()) drain_queue();  // held twins of removed tasks may go now
  return removed;
}

std::vector<QueuedTask> WorkerPool::remove_held(
    const std::function<bool(const QueuedTask&)>& match) {
  return blocker_.remove_if(match);
}

void WorkerPool::stop_worker(Worker& w) {
  if (w.status >= WorkerStatus::Stopping) return;
  w.status = WorkerStatus::Stopping;
  send(w, ipc::FrameType::kStop, 0, {});
}

void WorkerPool::on_exited(pid_t pid, int status) {
  Worker* wp = find_by_pid(pid);
  if (!wp) return;
  Worker& w = *wp;
  // A done already written by the worker wins over its death: read what is left first.
  if (w.from.valid()) on_readable(w);
  if (w.from.valid()) {
    loop_.unwatch(w.from.get());
    w.from.reset();
  }
  if (w.to.valid()) {
    loop_.unwatch(w.to.get());
    w.to.reset();
  }
  bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  MonoTime now = loop_.now();
  requeue_prefetched(w);  // it never started; finish_task below hands it to another worker
  if (w.current) {
    QueuedTask& t = *w.current;
    if (w.killed_by_us) {
      finish_task(w, w.cancel_is_timeout ? TaskOutcome::TimedOut : TaskOutcome::Cancelled, nullptr);
    } else {
      LOG_ERROR("Task (uuid=" << t.uuid() << ") was running on worker " << w.id
                              << " but the worker died unexpectedly (pid=" << pid << ", "
                              << (WIFSIGNALED(status) ? "signal " : "exit code ")
                              << (WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status))
                              << ")");
      finish_task(w, TaskOutcome::WorkerDied, nullptr);
    }
  }
  bool expected = w.status == WorkerStatus::Stopping || w.status == WorkerStatus::Exited;
  if (expected && clean) {
    w.status = WorkerStatus::Retired;
  } else {
    if (!expected && !w.killed_by_us) {
      ++counters_.worker_deaths;
      LOG_ERROR("Worker " << w.id << " pid=" << pid << " has died unexpectedly, status was "
                          << worker_status_name(w.status));
    }
    w.status = WorkerStatus::Error;
  }
  if (!expected && now - w.created_at < kQuickDeathSeconds && w.finished_count == 0) {
    ++quick_deaths_;
    spawn_not_before_ = now + std::min(10.0, 0.1 * (1 << std::min(quick_deaths_, 7)));
  }
  int id = w.id;
  w.removal_timer = loop_.after(opt_.worker_removal_wait, [this, id] {
    workers_.erase(id);
    order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
  });
  if (shutting_down_) {
    if (launcher_.live_processes() == 0 && shutdown_done_) {
      auto done = std::move(shutdown_done_);
      shutdown_done_ = nullptr;
      done();
    }
    return;
  }
  scale_up();
}

void WorkerPool::maintain() {
  maintain_timer_ = 0;
  if (shutting_down_) return;
  MonoTime now = loop_.now();
  if (queue_.empty() && queue_high_water_ >= kTrimAfterQueuedTasks) {
    // glibc keeps the heap a burst grew; without this main's private memory stays at its peak
    // (hundreds of MB after a 1M backlog) for the rest of its life.
    queue_high_water_ = 0;
    queue_ = {};  // the deque's block map too
    ::malloc_trim(0);
  }
  int cap = capacity();
  for (int id : std::vector<int>(order_)) {
    Worker& w = *workers_.at(id);
    if (w.status != WorkerStatus::Ready) continue;
    if (opt_.worker_max_lifetime && now - w.created_at >= *opt_.worker_max_lifetime) {
      LOG_INFO("worker " << id << " reached its lifetime of " << *opt_.worker_max_lifetime
                         << "s; retiring it");
      ++counters_.retirements;
      stop_worker(w);
      --cap;
      continue;
    }
    if (!w.current && cap > opt_.min_workers && now - w.idle_since > opt_.scaledown_wait) {
      LOG_DEBUG("worker " << id << " idle for " << (now - w.idle_since) << "s; scaling down");
      stop_worker(w);
      --cap;
    }
  }
  scale_up();
  maintain_timer_ = loop_.after(std::max(0.05, opt_.scaledown_interval), [this] { maintain(); });
}

void WorkerPool::resize(int min_workers, int max_workers) {
  opt_.min_workers = min_workers;
  opt_.max_workers = std::max(min_workers, max_workers);
  scale_up();
}

void WorkerPool::shutdown(double grace, std::function<void()> done) {
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  if (!queue_.empty()) {
    std::string uuids;
    std::size_t shown = 0;
    for (auto& t : queue_) {
      if (shown++ == 20) {
        uuids += " ...";
        break;
      }
      uuids += (uuids.empty() ? "" : ", ") + std::string(t.uuid());
    }
    LOG_WARNING("Dispatcherd shut down with queued work (" << queue_.size() << " tasks), uuids: ["
                                                           << uuids << "]");
    queue_.clear();
  }
  // Prefetched tasks are in their workers' pipes, ahead of the stop: the workers skip them.
  remove_queued([](const QueuedTask&) { return true; });
  for (auto& [id, w] : workers_) stop_worker(*w);
  auto escalate = [this] {
    for (auto& [id, w] : workers_)
      if (w->current) {
        LOG_WARNING("Worker " << id << " is currently running task (uuid=" << w->current->uuid()
                              << "), canceling for shutdown");
        cancel_task(*w, false);
      }
  };
  if (busy_count() > 0) loop_.after(grace, escalate);
  // Workers that never answer a stop (stuck before reading it) are killed after the bound.
  loop_.after(grace + opt_.cancel_grace + 1, [this] {
    for (auto& [id, w] : workers_)
      if (w->pid > 0 && w->status != WorkerStatus::Retired && w->status != WorkerStatus::Error) {
        w->killed_by_us = true;
        launcher_.signal(w->pid, SIGKILL, 0);
      }
  });
  if (launcher_.live_processes() == 0 && pending_spawns_ == 0 && shutdown_done_) {
    auto d = std::move(shutdown_done_);
    shutdown_done_ = nullptr;
    d();
  }
}

nlohmann::json WorkerPool::workers_json(MonoTime now) const {
  nlohmann::json out = nlohmann::json::object();
  for (int id : order_) {
    const Worker& w = *workers_.at(id);
    out["worker-" + std::to_string(id)] = {
        {"worker_id", w.id},
        {"pid", w.pid > 0 ? nlohmann::json(w.pid) : nlohmann::json(nullptr)},
        {"status", worker_status_name(w.status)},
        {"finished_count", w.finished_count},
        {"current_task", w.current ? nlohmann::json(w.current->task()) : nlohmann::json(nullptr)},
        {"current_task_uuid",
         w.current ? nlohmann::json(w.current->uuid()) : nlohmann::json(nullptr)},
        {"active_cancel", w.active_cancel},
        {"age", now - w.created_at}};
  }
  return out;
}

void WorkerPool::for_each_queued(const std::function<void(const QueuedTask&)>& fn) const {
  for (int id : order_) {
    const Worker& w = *workers_.at(id);
    if (w.next && !w.next_cancelled) fn(*w.next);
  }
  for (const QueuedTask& t : queue_) fn(t);
}

std::vector<std::pair<int, const QueuedTask*>> WorkerPool::running() const {
  std::vector<std::pair<int, const QueuedTask*>> out;
  for (int id : order_) {
    const Worker& w = *workers_.at(id);
    if (w.current) out.emplace_back(id, &*w.current);
  }
  return out;
}

std::map<std::string, int> WorkerPool::status_counts() const {
  std::map<std::string, int> out;
  for (auto& [id, w] : workers_) ++out[worker_status_name(w->status)];
  return out;
}

}  // namespace dispatcherd
