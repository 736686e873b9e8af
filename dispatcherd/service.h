#pragma once
// The service: wires brokers and producers → pipeline → processors → pool, and owns the order
// of the steps of upstream-spec §2.3. Each step is a module; this file only orders them.
// The control view (what control commands see) is in service_control.cpp, the metrics
// wiring in service_metrics.cpp.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/brokers/broker.h"
#include "dispatcherd/chunking.h"
#include "dispatcherd/config.h"
#include "dispatcherd/control/control_view.h"
#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/metrics/http_server.h"
#include "dispatcherd/metrics/metrics_registry.h"
#include "dispatcherd/pool/launcher.h"
#include "dispatcherd/pool/worker_pool.h"
#include "dispatcherd/processors/delayer.h"
#include "dispatcherd/producers/producers.h"

namespace dispatcherd {

/// Counters of the main process (the `main` command and the metrics).
struct ServiceCounters {
  std::uint64_t received = 0;         ///< upstream received_count
  std::uint64_t control = 0;          ///< upstream control_count
  std::uint64_t bad_messages = 0;     ///< undecodable, non-object or wrongly typed messages
  std::uint64_t chunk_errors = 0;     ///< chunks dropped as malformed
  std::uint64_t refused_control = 0;  ///< control commands refused over pg_notify by config
};

/// One running dispatcherd: construct, listen(), start(), run the loop, stop() on a signal.
class Service : public ControlView {
 public:
  /// Builds brokers, producers, processors and the pool from `config`; nothing starts yet.
  Service(EventLoop& loop, const Config& config, WorkerLauncher& launcher);
  ~Service() override;
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  /// Start-up checks that must stop the program (e.g. the socket path is taken by a live
  /// service). Call before start().
  Status listen();
  /// Starts metrics, the pool, every broker and every producer (§9 order). A pg_notify broker
  /// whose conninfo check was deferred (ConninfoCheck::Deferred) loads libpq when it starts,
  /// ~10-15 ms of main's time on a small VM: it starts on the loop's next turn, or, when an
  /// on-start task waits for a worker, once the first task is handed out (at most
  /// kLateBrokerBound later), so that the load does not delay that task.
  void start();
  /// Called once every broker has started (the deferred conninfo check passed): the service is
  /// ready (sd_notify READY=1).
  void on_ready(std::function<void()> fn) { ready_ = std::move(fn); }
  /// Called when start-up fails after start(): the deferred conninfo check failed
  /// (`file:line:col: message`). The caller stops the service and exits 1.
  void on_fatal(std::function<void(const Error&)> fn) { fatal_ = std::move(fn); }
  /// Graceful stop (§7.8): stop receiving, abandon delayed tasks (logged), let running tasks
  /// finish within the bound, then cancel and kill; `done` runs once every worker exited.
  void stop(std::function<void()> done);
  /// Feeds one payload as a broker read it (`from` null for in-process sources).
  void on_payload(Broker* from, std::string_view origin, std::string_view payload);
  /// Applies a reloaded config's pool sizes (SIGHUP).
  void reload(const Config& fresh);

  /// This node's id (config or a random uuid4).
  const std::string& node_id() const { return node_id_; }
  /// Counters so far.
  const ServiceCounters& counters() const { return counters_; }
  /// The pool (for metrics and tests).
  const WorkerPool& pool() const { return *pool_; }

  // ControlView (service_control.cpp).
  std::vector<ListedMessage> messages() const override;
  std::vector<ListedMessage> cancel(const TaskFilter& filter) override;
  nlohmann::json workers() const override;
  nlohmann::json producers() const override;
  nlohmann::json metrics() const override;
  nlohmann::json main_status() const override;
  nlohmann::json chunks() const override;
  nlohmann::json activities(int limit) const override;
  log::Level set_log_level(log::Level level) override;
  Status submit(const nlohmann::json& message) override;

 private:
  void process(Broker* from, nlohmann::json obj, std::string body, std::string_view origin);
  // messages(), or only those passing `filter` (keys as messages() gives them).
  std::vector<ListedMessage> listed(const TaskFilter* filter) const;
  // The task branch of process(): `fields` read and checked, `body` the text a worker gets.
  void accept_task(TaskFields fields, std::uint64_t identity, std::string_view body,
                   std::string_view origin);
  void run_control(Broker* from, const std::string& origin, const nlohmann::json& obj);
  void arm_delay_timer();
  void task_started(const QueuedTask& t, MonoTime now);
  /// worker_id of task_finished() for a task cancelled while queued, held or delayed.
  static constexpr int kNotStarted = WorkerPool::kNotStarted;
  void task_finished(const QueuedTask& t, TaskOutcome outcome, const ipc::DonePayload* done,
                     int worker_id);
  std::string bind_control(std::string_view request_json);
  void setup_metrics();
  void expire_chunks();
  // Starts the broker start() held back after `delay` seconds (0: the next loop turn), unless
  // it is due sooner already.
  void start_late_broker_in(double delay);

  EventLoop& loop_;
  Config config_;
  std::string node_id_;
  std::vector<std::unique_ptr<Broker>> brokers_;
  std::vector<std::unique_ptr<Producer>> producers_;
  ControlProducer* control_producer_ = nullptr;
  ChunkAccumulator chunks_;
  Delayer delayer_;
  EventLoop::TimerId delay_timer_ = 0;
  MonoTime delay_timer_at_ = 0;
  std::unique_ptr<WorkerPool> pool_;
  ServiceCounters counters_;
  log::Level last_set_level_{0};
  bool stopping_ = false;
  std::function<void()> ready_;
  std::function<void(const Error&)> fatal_;
  // The pg_notify broker when its start loads libpq, held back by start() (see there).
  Broker* late_broker_ = nullptr;
  EventLoop::TimerId late_timer_ = 0;
  MonoTime late_due_ = 0;
  /// Longest that start() holds back a broker for a queued task, when no worker comes up.
  static constexpr double kLateBrokerBound = 0.5;

  // Metrics (service_metrics.cpp).
  metrics::Registry registry_;
  std::unique_ptr<metrics::MetricsHttpServer> http_;
  metrics::HistogramFamily* run_seconds_ = nullptr;
  metrics::HistogramFamily* start_latency_ = nullptr;
  metrics::CounterFamily* tasks_finished_ = nullptr;
  std::vector<std::string> task_labels_;  // registered task names: the only label values
};

}  // namespace dispatcherd
