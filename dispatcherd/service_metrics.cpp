// The Service's metrics: upstream's three families first (byte-compatible), then ours, and
// the per-task bookkeeping that feeds them and the task log lines.
#include <algorithm>

#include "dispatcherd/brokers/pg_notify_broker.h"
#include "dispatcherd/log.h"
#include "dispatcherd/metrics/upstream_families.h"
#include "dispatcherd/service.h"
#include "dispatcherd/task.h"

namespace dispatcherd {

namespace {

const char* outcome_name(TaskOutcome o) {
  switch (o) {
    case TaskOutcome::Succeeded:
      return "succeeded";
    case TaskOutcome::Failed:
      return "failed";
    case TaskOutcome::Cancelled:
      return "cancelled";
    case TaskOutcome::TimedOut:
      return "timed_out";
    case TaskOutcome::WorkerDied:
      return "worker_died";
  }
  return "failed";
}

constexpr const char* kOtherTask = "other";  // label of tasks that are not registered

}  // namespace

void Service::setup_metrics() {
  // Label values come only from names known at start: registered tasks and command tasks.
  // Anything else a publisher sends is counted under "other", so labels stay bounded.
  task_labels_ = registered_task_names();
  for (const auto& [name, cfg] : config_.extensions.tasks) task_labels_.push_back(name);
  std::sort(task_labels_.begin(), task_labels_.end());

  metrics::UpstreamSources up;
  up.messages_received = [this] { return static_cast<double>(counters_.received); };
  up.control_messages = [this] { return static_cast<double>(counters_.control); };
  up.worker_records = [this] { return static_cast<double>(pool_->record_count()); };
  metrics::register_upstream_families(registry_, up);

  using metrics::MetricType;
  std::size_t label_sets = (task_labels_.size() + 1) * 5;
  tasks_finished_ =
      &registry_.counter("dispatcherd_tasks_finished_total",
                         "Tasks ended, by task name and outcome.", {"task", "outcome"}, label_sets);
  run_seconds_ =
      &registry_.histogram("dispatcherd_task_run_seconds", "Task run time in a worker, seconds.",
                           metrics::kRunTimeBuckets);
  start_latency_ =
      &registry_.histogram("dispatcherd_task_start_latency_seconds",
                           "Time from reading a task message to handing it to a worker, seconds.",
                           metrics::kLatencyBuckets);

  auto value = [this](const char* name, const char* help, MetricType type,
                      std::function<double()> fn) {
    registry_.collect_value(name, help, type, std::move(fn));
  };
  value("dispatcherd_tasks_discarded_total", "Tasks discarded by on_duplicate rules.",
        MetricType::Counter,
        [this] { return static_cast<double>(pool_->blocker().counters().discarded); });
  value("dispatcherd_queue_overflow_total", "Tasks dropped because the queue was full.",
        MetricType::Counter,
        [this] { return static_cast<double>(pool_->counters().queue_overflow); });
  value("dispatcherd_blocked_overflow_total", "Tasks dropped because the blocked list was full.",
        MetricType::Counter,
        [this] { return static_cast<double>(pool_->blocker().counters().overflow); });
  value("dispatcherd_delayed_overflow_total", "Tasks dropped because the delayed set was full.",
        MetricType::Counter, [this] { return static_cast<double>(delayer_.counters().overflow); });
  value("dispatcherd_bad_messages_total",
        "Messages refused: not JSON objects, or fields of the wrong type.", MetricType::Counter,
        [this] { return static_cast<double>(counters_.bad_messages); });
  value("dispatcherd_chunk_errors_total", "Chunks dropped as malformed.", MetricType::Counter,
        [this] {
          return static_cast<double>(counters_.chunk_errors + chunks_.stats().errored_assemblies);
        });
  value("dispatcherd_chunk_timeouts_total", "Chunked messages that expired incomplete.",
        MetricType::Counter,
        [this] { return static_cast<double>(chunks_.stats().timed_out_assemblies); });
  value("dispatcherd_chunk_overflow_total", "Partial chunked messages dropped at the bound.",
        MetricType::Counter,
        [this] { return static_cast<double>(chunks_.stats().overflow_drops); });
  value("dispatcherd_control_refused_total",
        "Control commands refused over pg_notify by extensions.pg_notify_control_commands.",
        MetricType::Counter, [this] { return static_cast<double>(counters_.refused_control); });
  value("dispatcherd_worker_deaths_total", "Workers that died unexpectedly.", MetricType::Counter,
        [this] { return static_cast<double>(pool_->counters().worker_deaths); });
  value("dispatcherd_worker_spawn_failures_total", "Worker processes that could not be started.",
        MetricType::Counter,
        [this] { return static_cast<double>(pool_->counters().spawn_failures); });
  value("dispatcherd_log_lines_dropped_total", "Log lines dropped while the output was stalled.",
        MetricType::Counter, [] { return static_cast<double>(log::dropped_lines()); });
  value("dispatcherd_queue_depth", "Tasks waiting for a free worker.", MetricType::Gauge,
        [this] { return static_cast<double>(pool_->queued_count()); });
  value("dispatcherd_blocked_tasks", "Tasks held by on_duplicate rules.", MetricType::Gauge,
        [this] { return static_cast<double>(pool_->blocker().held_size()); });
  value("dispatcherd_delayed_tasks", "Tasks waiting for their delay.", MetricType::Gauge,
        [this] { return static_cast<double>(delayer_.size()); });
  value("dispatcherd_running_tasks", "Tasks running on workers.", MetricType::Gauge,
        [this] { return static_cast<double>(pool_->busy_count()); });
  registry_.collect("dispatcherd_workers", "Worker records by status.", MetricType::Gauge,
                    {"status"}, [this](metrics::SampleSink& sink) {
                      for (auto& [status, n] : pool_->status_counts())
                        sink.add({status}, static_cast<double>(n));
                    });
  for (auto& b : brokers_) {
    auto* pg = dynamic_cast<PgNotifyBroker*>(b.get());
    if (!pg) continue;
    // 1 only once every LISTEN succeeded: a notification sent while the connection is up but
    // not yet listening is lost, so a client waiting for this gauge must not publish earlier.
    value("dispatcherd_pg_connected",
          "1 while the LISTEN connection is up and listening on every channel.", MetricType::Gauge,
          [pg] { return pg->ready() ? 1.0 : 0.0; });
    value("dispatcherd_pg_reconnects_total",
          "LISTEN connections lost and re-established (including failed self-checks).",
          MetricType::Counter, [pg] { return pg->status().value("recycle_count", 0.0); });
    value("dispatcherd_pg_outage_seconds_total", "Seconds without a LISTEN connection.",
          MetricType::Counter,
          [pg] { return pg->status()["connection"].value("outage_seconds_total", 0.0); });
    value("dispatcherd_pg_self_checks_total", "Self-check round trips that succeeded.",
          MetricType::Counter,
          [pg] { return pg->status()["broker_self_check"].value("success_count", 0.0); });
    value("dispatcherd_pg_self_check_failures_total",
          "Self-checks that came late or not at all (each recycled the connection).",
          MetricType::Counter,
          [pg] { return pg->status()["broker_self_check"].value("failure_count", 0.0); });
    registry_.collect("dispatcherd_pg_notification_queue_usage",
                      "pg_notification_queue_usage() as last read (0..1; refreshed per scrape).",
                      MetricType::Gauge, {}, [pg](metrics::SampleSink& sink) {
                        pg->request_queue_usage();  // the answer lands before the next scrape
                        auto v = pg->status()["connection"]["notification_queue_usage"];
                        if (v.is_number()) sink.add({}, v.get<double>());
                      });
  }
  if (config_.metrics.enabled)
    http_ = std::make_unique<metrics::MetricsHttpServer>(loop_, config_.metrics,
                                                         [this] { return registry_.try_render(); });
}

void Service::task_started(const QueuedTask& t, MonoTime now) {
  start_latency_->get().observe(now - t.received_at);
}

void Service::task_finished(const QueuedTask& t, TaskOutcome outcome, const ipc::DonePayload* done,
                            int worker_id) {
  const std::string_view label =
      std::binary_search(task_labels_.begin(), task_labels_.end(), t.task()) ? t.task()
                                                                             : kOtherTask;
  tasks_finished_->with({label, outcome_name(outcome)}).inc();
  if (done) run_seconds_->get().observe(done->time_finish - done->time_started);
  if (worker_id == kNotStarted) {
    LOG_INFO("Task " << t.task() << " (uuid=" << t.uuid() << ") cancelled before it started");
    return;
  }
  switch (outcome) {
    case TaskOutcome::Succeeded:
      LOG_DEBUG("Worker " << worker_id << " finished task (uuid=" << t.uuid()
                          << "), result: " << (done ? done->result : "null"));
      break;
    case TaskOutcome::Failed:
      LOG_ERROR("Worker " << worker_id << " task " << t.task() << " (uuid=" << t.uuid()
                          << ") failed: " << (done ? done->error : "unknown error"));
      break;
    case TaskOutcome::Cancelled:
      LOG_INFO("Worker " << worker_id << " finished task (uuid=" << t.uuid()
                         << "), expected cancel, canceled");
      break;
    case TaskOutcome::TimedOut:
      LOG_WARNING("Worker " << worker_id << " task (uuid=" << t.uuid() << ") timed out after "
                            << t.timeout << "s");
      break;
    case TaskOutcome::WorkerDied:
      break;  // the pool logged it with the uuid
  }
}

}  // namespace dispatcherd
