#include "submit.h"

#include <chrono>
#include <ostream>

#include "dispatcherd/chunking.h"
#include "dispatcherd/config.h"
#include "dispatcherd/control_protocol.h"
#include "dispatcherd/log.h"
#include "dispatcherd/message.h"
#include "pg_client.h"
#include "request.h"

namespace dispatcherctl {

using dispatcherd::Result;

std::vector<std::string> build_task_messages(const SubmitOptions& o, double time_pub) {
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(o.count));
  for (int i = 0; i < o.count; ++i) {
    nlohmann::ordered_json m;
    m["task"] = o.task;
    m["time_pub"] = time_pub;
    if (o.uuid.empty())
      m["uuid"] = dispatcherd::uuid4();
    else
      m["uuid"] = o.count == 1 ? o.uuid : o.uuid + "-" + std::to_string(i);
    if (o.args.is_array() && !o.args.empty()) m["args"] = o.args;
    if (o.kwargs.is_object() && !o.kwargs.empty()) m["kwargs"] = o.kwargs;
    if (o.timeout > 0) m["timeout"] = o.timeout;
    if (o.delay) m["delay"] = *o.delay;
    if (o.on_duplicate) m["on_duplicate"] = *o.on_duplicate;
    out.push_back(dispatcherd::dump_reply(m));
  }
  return out;
}

Result<std::vector<PublishStatement>> plan_statements(const std::vector<std::string>& messages,
                                                      std::size_t max_bytes, std::size_t batch) {
  std::vector<PublishStatement> plan;
  for (const std::string& m : messages) {
    if (m.size() > max_bytes) {
      auto pieces = dispatcherd::split_message(m, max_bytes);
      if (!pieces.ok()) return pieces.error();
      for (std::string& p : *pieces) plan.push_back({false, {std::move(p)}});
      continue;
    }
    if (plan.empty() || !plan.back().batched || plan.back().payloads.size() >= batch)
      plan.push_back({true, {}});
    plan.back().payloads.push_back(m);
  }
  return plan;
}

int run_submit(const Invocation& inv, std::ostream& err) {
  const std::string path = dispatcherd::resolve_config_path(inv.common.config);
  auto config = dispatcherd::load_config(path);
  if (!config.ok()) {
    err << "dispatcherctl: " << config.error().message << "\n";
    return 1;
  }
  for (const std::string& w : config->warnings) LOG_DEBUG(w);
  auto fail = [&err](const std::string& message) {
    err << "dispatcherctl: " << message << "\n";
    return 1;
  };
  if (auto broker = choose_publish_broker(*config); !broker.ok())
    return fail(broker.error().message);
  auto channel = choose_channel(config->pg_notify, inv.submit_options.queue);
  if (!channel.ok()) return fail(channel.error().message);

  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const auto messages = build_task_messages(inv.submit_options, now);
  auto plan = plan_statements(messages, dispatcherd::kPgNotifyMaxBytes);
  if (!plan.ok()) return fail(plan.error().message);

  auto client = PgClient::connect(config->pg_notify.conninfo);
  if (!client.ok()) return fail(client.error().message);
  for (const PublishStatement& st : *plan) {
    auto s = st.batched && st.payloads.size() > 1 ? client->notify_many(*channel, st.payloads)
                                                  : client->notify(*channel, st.payloads.front());
    if (!s.ok()) return fail(s.error().message);
  }
  LOG_INFO("published " << messages.size() << " message(s) in " << plan->size() << " statement(s)");
  err << "submitted " << messages.size() << " task(s) to " << *channel << "\n";
  return 0;
}

}  // namespace dispatcherctl
