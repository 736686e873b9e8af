#pragma once
// The service: wires brokers → pipeline → pool and owns the order of the steps of
// upstream-spec §2.3. It holds no logic of its own beyond that order; each step is a module.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/brokers/broker.h"
#include "dispatcherd/chunking.h"
#include "dispatcherd/config.h"
#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/pool/launcher.h"
#include "dispatcherd/pool/worker_pool.h"

namespace dispatcherd {

/// Counters of the main process (the `main` command and the metrics).
struct ServiceCounters {
  std::uint64_t received = 0;      ///< upstream received_count
  std::uint64_t control = 0;       ///< upstream control_count
  std::uint64_t bad_messages = 0;  ///< undecodable, non-object or wrongly typed messages
  std::uint64_t chunk_errors = 0;
};

/// One running dispatcherd: create, start(), run the loop, stop() on a signal.
class Service {
 public:
  /// Builds brokers and the pool from `config`; nothing starts until start().
  Service(EventLoop& loop, const Config& config, WorkerLauncher& launcher);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  /// Starts the pool and every broker.
  void start();
  /// Graceful stop (§7.8): stop receiving, let running tasks finish within the bound, then
  /// cancel and kill; `done` runs once every worker has exited.
  void stop(std::function<void()> done);
  /// Feeds one payload as if a broker had read it (producers, tests).
  void on_payload(Broker* from, std::string_view origin, std::string_view payload);
  /// Applies a reloaded config's log level and pool sizes (SIGHUP).
  void reload(const Config& fresh);

  /// This node's id (config or a random uuid4).
  const std::string& node_id() const { return node_id_; }
  /// Counters so far.
  const ServiceCounters& counters() const { return counters_; }
  /// The pool (for control commands and metrics).
  const WorkerPool& pool() const { return *pool_; }

 private:
  void handle_task(nlohmann::json obj, std::string body, std::string_view origin);
  void handle_control(Broker* from, const nlohmann::json& obj);
  nlohmann::json run_command(const std::string& command, const nlohmann::json& data);
  void task_finished(const QueuedTask& t, TaskOutcome outcome, const ipc::DonePayload* done,
                     int worker_id);

  EventLoop& loop_;
  Config config_;
  std::string node_id_;
  std::vector<std::unique_ptr<Broker>> brokers_;
  ChunkAccumulator chunks_;
  std::unique_ptr<WorkerPool> pool_;
  ServiceCounters counters_;
  bool stopping_ = false;
};

}  // namespace dispatcherd
