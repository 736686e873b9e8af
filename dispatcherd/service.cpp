#include "dispatcherd/service.h"

#include <unistd.h>

#include <thread>

#include "dispatcherd/brokers/pg_notify_broker.h"
#include "dispatcherd/log.h"
#include "dispatcherd/message.h"

namespace dispatcherd {

namespace {

PoolOptions pool_options(const Config& c) {
  PoolOptions o;
  o.min_workers = c.pool.min_workers;
  unsigned cpus = std::thread::hardware_concurrency();
  o.max_workers = c.pool.max_workers.value_or(cpus ? static_cast<int>(cpus) : 4);
  o.scaledown_wait = c.pool.scaledown_wait;
  o.scaledown_interval = c.pool.scaledown_interval;
  o.worker_stop_wait = c.pool.worker_stop_wait;
  o.worker_removal_wait = c.pool.worker_removal_wait;
  o.worker_max_lifetime = c.pool.worker_max_lifetime_seconds;
  o.cancel_grace = c.extensions.cancel_grace_seconds;
  o.max_queued = c.extensions.max_queued_tasks;
  o.max_tasks_per_worker = c.extensions.max_tasks_per_worker;
  return o;
}

ChunkAccumulator::Limits chunk_limits(const Config& c) {
  ChunkAccumulator::Limits l;
  l.timeout_seconds = c.main.chunk_message_timeout_seconds;
  l.max_messages = c.extensions.max_partial_messages;
  l.max_bytes = c.extensions.max_partial_bytes;
  l.max_message_bytes = c.extensions.max_message_bytes;
  return l;
}

// A short excerpt of untrusted input for a log line.
std::string excerpt(std::string_view s) {
  constexpr std::size_t kMax = 200;
  std::string out(s.substr(0, kMax));
  if (s.size() > kMax) out += "...";
  return out;
}

}  // namespace

Service::Service(EventLoop& loop, const Config& config, WorkerLauncher& launcher)
    : loop_(loop),
      config_(config),
      node_id_(config.main.node_id.value_or(uuid4())),
      chunks_(chunk_limits(config)) {
  WorkerPool::Hooks hooks;
  hooks.finished = [this](const QueuedTask& t, TaskOutcome o, const ipc::DonePayload* d, int w) {
    task_finished(t, o, d, w);
  };
  hooks.control = [this](int, std::string_view request) {
    nlohmann::json req = nlohmann::json::parse(request, nullptr, false);
    if (!req.is_object() || !req.contains("command") || !req["command"].is_string())
      return std::string(R"({"error": "Failed to run control task"})");
    nlohmann::json data = req.value("control_data", nlohmann::json::object());
    ++counters_.control;
    return dump_python(run_command(req["command"].get<std::string>(), data));
  };
  pool_ = std::make_unique<WorkerPool>(loop_, launcher, pool_options(config_), std::move(hooks));
  for (const std::string& name : config_.broker_order) {
    if (name == "pg_notify" && config_.pg_notify.enabled) {
      auto self = std::make_shared<Broker*>(nullptr);
      auto b = std::make_unique<PgNotifyBroker>(
          loop_, config_.pg_notify, [this, self](std::string_view origin, std::string_view p) {
            on_payload(*self, origin, p);
          });
      *self = b.get();
      brokers_.push_back(std::move(b));
    } else if (name == "socket" && config_.socket.enabled) {
      LOG_WARNING("the socket broker is not available yet; ignoring brokers.socket");
    }
  }
}

Service::~Service() = default;

void Service::start() {
  pool_->start();
  for (auto& b : brokers_) b->start();
  LOG_INFO("Dispatcherd node_id=" << node_id_ << " running forever, or until shutdown command");
}

void Service::stop(std::function<void()> done) {
  if (stopping_) return;
  stopping_ = true;
  LOG_INFO("Received exit signal");
  for (auto& b : brokers_) b->stop();
  pool_->shutdown(config_.extensions.shutdown_timeout_seconds, std::move(done));
}

void Service::reload(const Config& fresh) {
  int cpus = static_cast<int>(std::thread::hardware_concurrency());
  pool_->resize(fresh.pool.min_workers, fresh.pool.max_workers.value_or(cpus ? cpus : 4));
}

void Service::on_payload(Broker* from, std::string_view origin, std::string_view payload) {
  if (stopping_) return;
  auto decoded = decode_payload(payload);
  if (!decoded) {
    ++counters_.bad_messages;
    LOG_ERROR("dropping message from " << origin << ": " << decoded.error().message
                                       << ": " << excerpt(payload));
    return;
  }
  nlohmann::json obj = std::move(decoded).value();
  // The worker gets the bytes as received unless main had to build the object (a bare task
  // or a reassembled chunk): main never re-encodes JSON it was given.
  auto first = payload.find_first_not_of(" \t\r\n");
  bool body_is_payload = first != std::string_view::npos && payload[first] == '{';
  if (is_chunk(obj)) {
    auto in = chunks_.ingest(obj, loop_.now());
    switch (in.outcome) {
      case ChunkAccumulator::Outcome::Incomplete:
        for (auto& id : chunks_.expire(loop_.now()))
          LOG_ERROR("chunked message " << id << " expired before all chunks arrived");
        return;
      case ChunkAccumulator::Outcome::Error:
        ++counters_.chunk_errors;
        LOG_ERROR("chunk from " << origin << " dropped: " << in.error);
        return;
      case ChunkAccumulator::Outcome::Complete:
        obj = std::move(in.message);
        body_is_payload = false;
        break;
      case ChunkAccumulator::Outcome::NotChunk:
        break;
    }
  }
  if (is_control(obj)) {
    if (!obj.contains("uuid")) obj["uuid"] = "internal-" + std::to_string(counters_.received);
    obj["channel"] = std::string(origin);
    ++counters_.received;
    handle_control(from, obj);
  } else {
    handle_task(std::move(obj), body_is_payload ? std::string(payload) : std::string(),
                origin);
  }
  for (auto& id : chunks_.expire(loop_.now()))
    LOG_ERROR("chunked message " << id << " expired before all chunks arrived");
}

void Service::handle_task(nlohmann::json obj, std::string body, std::string_view origin) {
  auto fields = read_task_fields(obj);
  std::string uuid = obj.contains("uuid") && obj["uuid"].is_string()
                         ? obj["uuid"].get<std::string>()
                         : "internal-" + std::to_string(counters_.received);
  ++counters_.received;
  if (!fields) {
    ++counters_.bad_messages;
    LOG_ERROR("rejecting task message (uuid=" << uuid << ") from " << origin << ": "
                                               << fields.error().message);
    return;
  }
  QueuedTask t;
  t.body = body.empty() ? dump_compact(obj) : std::move(body);
  t.uuid = std::move(uuid);
  t.channel = std::string(origin);
  t.task = std::move(fields->task);
  t.timeout = fields->timeout;
  t.identity = identity_hash(obj);
  t.on_duplicate = fields->on_duplicate;
  t.received_at = loop_.now();
  if (fields->delay > 0) {
    auto shared = std::make_shared<QueuedTask>(std::move(t));
    loop_.after(fields->delay, [this, shared] {
      if (!stopping_) pool_->submit(std::move(*shared));
    });
    return;
  }
  pool_->submit(std::move(t));
}

void Service::handle_control(Broker* from, const nlohmann::json& obj) {
  ++counters_.control;
  auto fields = read_control_fields(obj);
  nlohmann::json reply;
  if (!fields) {
    reply = {{"error", fields.error().message}};
  } else {
    reply = run_command(fields->command, fields->data);
  }
  reply["node_id"] = node_id_;
  if (fields && !fields->reply_to.empty() && from) from->publish(fields->reply_to, dump_python(reply));
}

nlohmann::json Service::run_command(const std::string& command, const nlohmann::json& data) {
  (void)data;
  MonoTime now = loop_.now();
  if (command == "alive") return nlohmann::json::object();
  if (command == "workers") return pool_->workers_json(now);
  if (command == "main") {
    const auto& c = pool_->counters();
    return {{"received_count", counters_.received},
            {"control_count", counters_.control},
            {"pid", ::getpid()},
            {"pool",
             {{"next_worker_id", pool_->next_worker_id()},
              {"finished_count", c.upstream_finished},
              {"canceled_count", c.canceled},
              {"retirement_count", c.retirements},
              // Ours, beyond upstream's four:
              {"queued_count", pool_->queued().size()},
              {"queue_overflow_count", c.queue_overflow},
              {"succeeded_count", c.succeeded},
              {"failed_count", c.failed},
              {"cancelled_count", c.cancelled},
              {"timed_out_count", c.timed_out},
              {"worker_died_count", c.worker_died}}}};
  }
  if (command == "producers") {
    nlohmann::json out = nlohmann::json::object();
    for (auto& b : brokers_) out[std::string(b->name()) + "-producer"] = b->status();
    return out;
  }
  if (command == "running") {
    nlohmann::json out = nlohmann::json::object();
    for (auto [id, t] : pool_->running()) {
      nlohmann::json m = nlohmann::json::parse(t->body, nullptr, false);
      if (!m.is_object()) m = nlohmann::json::object();
      m["uuid"] = t->uuid;
      if (!t->channel.empty()) m["channel"] = t->channel;
      out["worker-" + std::to_string(id)] = m;
    }
    std::size_t i = 0;
    for (const auto& t : pool_->queued()) {
      nlohmann::json m = nlohmann::json::parse(t.body, nullptr, false);
      if (!m.is_object()) m = nlohmann::json::object();
      m["uuid"] = t.uuid;
      out["queued-" + std::to_string(i++)] = m;
    }
    return out;
  }
  return {{"error", "No control method " + command}};
}

void Service::task_finished(const QueuedTask& t, TaskOutcome outcome, const ipc::DonePayload* done,
                            int worker_id) {
  switch (outcome) {
    case TaskOutcome::Succeeded:
      LOG_DEBUG("Worker " << worker_id << " finished task (uuid=" << t.uuid
                          << "), result: " << (done ? done->result : "null"));
      break;
    case TaskOutcome::Failed:
      LOG_ERROR("Worker " << worker_id << " task " << t.task << " (uuid=" << t.uuid
                          << ") failed: " << (done ? done->error : "unknown error"));
      break;
    case TaskOutcome::Cancelled:
      LOG_INFO("Worker " << worker_id << " finished task (uuid=" << t.uuid << "), canceled");
      break;
    case TaskOutcome::TimedOut:
      LOG_WARNING("Worker " << worker_id << " task (uuid=" << t.uuid << ") timed out");
      break;
    case TaskOutcome::WorkerDied:
      break;  // the pool logged it
  }
}

}  // namespace dispatcherd
