// The Service as control commands see it (ControlView): listings, cancel, status objects.
#include <unistd.h>

#include <optional>

#include "dispatcherd/brokers/broker.h"
#include "dispatcherd/control_protocol.h"
#include "dispatcherd/service.h"

namespace dispatcherd {

namespace {

// The message object of a held task as `running` shows it: the received fields plus the
// uuid and channel main added (§2.3).
nlohmann::json message_of(const QueuedTask& t) {
  nlohmann::json m = nlohmann::json::parse(t.body(), nullptr, false);
  if (!m.is_object()) m = nlohmann::json{{"task", t.body()}};
  m["uuid"] = t.uuid();
  if (!t.channel().empty()) m["channel"] = t.channel();
  return m;
}

// A delayed message's object (a task or a control request) with its uuid and channel;
// nullopt when its text is not a JSON object.
std::optional<nlohmann::json> delayed_object(const Delayed& d) {
  nlohmann::json m = nlohmann::json::parse(d.message.body(), nullptr, false);
  if (!m.is_object()) return std::nullopt;
  m["uuid"] = d.message.uuid();
  if (!d.message.channel().empty()) m["channel"] = d.message.channel();
  return m;
}

}  // namespace

std::vector<ListedMessage> Service::messages() const {
  return listed(nullptr);
}

std::vector<ListedMessage> Service::listed(const TaskFilter* filter) const {
  // Keys count every held message of their kind, listed or not. With a filter, only a message
  // whose task name and uuid may pass is parsed, so a cancel by task or uuid in a long queue
  // parses just the candidates.
  std::vector<ListedMessage> out;
  auto add = [&](const char* kind, std::size_t index, const QueuedTask& t) {
    if (filter && !filter->may_match(t.task(), t.uuid())) return;
    nlohmann::json m = message_of(t);
    if (!filter || filter->matches(m)) out.emplace_back(kind + std::to_string(index), std::move(m));
  };
  for (auto [id, t] : pool_->running()) add("worker-", static_cast<std::size_t>(id), *t);
  std::size_t i = 0;
  pool_->blocker().for_each_held([&](const QueuedTask& t) { add("blocked-", i++, t); });
  i = 0;
  pool_->for_each_queued([&](const QueuedTask& t) { add("queued-", i++, t); });
  i = 0;
  delayer_.for_each([&](const Delayed& d) {
    const std::size_t index = i++;
    if (filter && !filter->may_match(d.message.task(), d.message.uuid())) return;
    std::optional<nlohmann::json> m = delayed_object(d);
    if (filter && !(m && filter->matches(*m))) return;  // a filter never matches a non-object
    out.emplace_back("delayed-" + std::to_string(index), m ? std::move(*m) : message_of(d.message));
  });
  return out;
}

std::vector<ListedMessage> Service::cancel(const TaskFilter& filter) {
  // What matched, listed as it was before anything was removed (§4.4).
  std::vector<ListedMessage> matched = listed(&filter);
  auto match = [&](const QueuedTask& t) {
    return filter.may_match(t.task(), t.uuid()) && filter.matches(message_of(t));
  };
  auto delayed_match = [&](const Delayed& d) {
    if (!filter.may_match(d.message.task(), d.message.uuid())) return false;
    std::optional<nlohmann::json> m = delayed_object(d);
    return m && filter.matches(*m);
  };
  std::vector<std::string> running;
  for (auto [id, t] : pool_->running())
    if (match(*t)) running.push_back(std::string(t->uuid()));
  for (const std::string& uuid : running) pool_->cancel_running(uuid);
  std::vector<QueuedTask> unstarted = pool_->remove_held(match);
  for (QueuedTask& t : pool_->remove_queued(match)) unstarted.push_back(std::move(t));
  for (Delayed& d : delayer_.remove_if(delayed_match))
    if (!d.is_control) unstarted.push_back(std::move(d.message));
  arm_delay_timer();
  // Tasks removed before they started ended too: as cancelled, so that every received task
  // shows up in exactly one outcome (counters and metrics).
  pool_->count_cancelled_unstarted(unstarted.size());
  for (const QueuedTask& t : unstarted)
    task_finished(t, TaskOutcome::Cancelled, nullptr, kNotStarted);
  return matched;
}

nlohmann::json Service::workers() const {
  return pool_->workers_json(loop_.now());
}

nlohmann::json Service::producers() const {
  nlohmann::json out = nlohmann::json::object();
  for (auto& b : brokers_) out[std::string(b->name()) + "-producer"] = b->status();
  for (auto& p : producers_) out[p->name()] = p->status(loop_.now());
  return out;
}

nlohmann::json Service::metrics() const {
  if (!http_) return {{"enabled", false}};
  return {{"enabled", true}, {"status", http_->status()}};
}

nlohmann::json Service::main_status() const {
  const PoolCounters& c = pool_->counters();
  auto b = pool_->blocker().counters();
  return {{"received_count", counters_.received},
          {"control_count", counters_.control},
          {"pid", ::getpid()},
          {"pool",
           {{"next_worker_id", pool_->next_worker_id()},
            {"finished_count", c.upstream_finished},
            {"canceled_count", c.canceled},
            {"retirement_count", c.retirements},
            // Ours, beyond upstream's four:
            {"queued_count", pool_->queued_count()},
            {"blocked_count", pool_->blocker().held_size()},
            {"delayed_count", delayer_.size()},
            {"queue_overflow_count", c.queue_overflow},
            {"discard_count", b.discarded},
            {"succeeded_count", c.succeeded},
            {"failed_count", c.failed},
            {"cancelled_count", c.cancelled},
            {"timed_out_count", c.timed_out},
            {"worker_died_count", c.worker_died}}}};
}

nlohmann::json Service::chunks() const {
  return chunks_.snapshot(loop_.now());
}

nlohmann::json Service::activities(int limit) const {
  // Our loop has no asyncio tasks; these entries describe its long-lived activities with
  // upstream's names where one exists (`results_task` reads worker events).
  auto entry = [limit](const std::string& text) {
    return nlohmann::json{{"done", false}, {"stack", limit == 0 ? "No stack for " + text : text}};
  };
  nlohmann::json out = nlohmann::json::object();
  out["results_task"] =
      entry("worker IPC readers on the event loop: " + std::to_string(pool_->record_count()) +
            " workers");
  out["management_task"] = entry("pool maintenance timer (scaling, retirement, removal)");
  out["worker_timeout_manager"] =
      entry("task timeout timers: " + std::to_string(pool_->busy_count()) + " running tasks");
  out["delayed_task_runner"] =
      entry("delay timer: " + std::to_string(delayer_.size()) + " waiting");
  for (auto& b : brokers_)
    out["dispatcherd.brokers." + std::string(b->name()) + "_production"] =
        entry(std::string(b->name()) + " broker, ready=" + (b->ready() ? "true" : "false"));
  out["event_loop"] = entry("epoll loop, " + std::to_string(loop_.timer_count()) + " timers");
  if (http_) out["metrics_server"] = entry("/metrics responder on the loop");
  return out;
}

log::Level Service::set_log_level(log::Level level) {
  log::Level previous = last_set_level_;
  last_set_level_ = level;
  log::set_level(static_cast<int>(level) == 0 ? log::Level::Info : level);
  return previous;
}

Status Service::submit(const nlohmann::json& message) {
  if (!control_producer_) return Error{std::string(kNoControlProducerError)};
  if (!message.is_object()) return Error{"run needs a task message object as control_data"};
  control_producer_->count();
  std::string body = dump_compact(message);
  process(nullptr, message, std::move(body), "");
  return Ok{};
}

}  // namespace dispatcherd
