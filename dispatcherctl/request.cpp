#include "request.h"

#include "dispatcherd/channel_name.h"
#include "dispatcherd/control_protocol.h"
#include "dispatcherd/message.h"

namespace dispatcherctl {

using dispatcherd::Config;
using dispatcherd::Error;
using dispatcherd::Result;
using nlohmann::json;

namespace {

bool configured(const Config& c, BrokerKind k) {
  return k == BrokerKind::PgNotify ? c.pg_notify.enabled : c.socket.enabled;
}

Result<BrokerKind> named_broker(const Config& c, const std::string& name, const char* key) {
  const BrokerKind k = name == "socket" ? BrokerKind::Socket : BrokerKind::PgNotify;
  if ((name != "socket" && name != "pg_notify") || !configured(c, k))
    return Error{std::string("publish.") + key + " names broker '" + name +
                 "', which is not configured in " + c.path};
  return k;
}

std::string broker_list(const Config& c) {
  std::string out = "[";
  for (std::size_t i = 0; i < c.broker_order.size(); ++i)
    out += (i ? ", " : "") + c.broker_order[i];
  return out + "]";
}

// The rule shared by control and publishing once the explicit choices are exhausted.
Result<BrokerKind> only_or_default(const Config& c) {
  if (c.broker_order.size() == 1)
    return c.broker_order[0] == "socket" ? BrokerKind::Socket : BrokerKind::PgNotify;
  if (c.publish.default_broker) return named_broker(c, *c.publish.default_broker, "default_broker");
  // Upstream's text, plus where it looked.
  return Error{"Could not determine which broker to publish with between options " +
               broker_list(c) + " (set publish.default_broker or " +
               "publish.default_control_broker in " + c.path + ")"};
}

}  // namespace

Result<BrokerKind> choose_control_broker(const Config& config) {
  if (config.publish.default_control_broker)
    return named_broker(config, *config.publish.default_control_broker, "default_control_broker");
  return only_or_default(config);
}

Result<BrokerKind> choose_publish_broker(const Config& config) {
  auto k = only_or_default(config);
  if (k.ok() && *k != BrokerKind::PgNotify)
    return Error{"submit publishes over pg_notify, but the publish broker is socket in " +
                 config.path};
  return k;
}

Result<std::string> choose_channel(const dispatcherd::PgNotifyConfig& pg,
                                   std::string_view explicit_channel) {
  std::string channel;
  if (!explicit_channel.empty())
    channel = explicit_channel;
  else if (pg.default_publish_channel)
    channel = *pg.default_publish_channel;
  else if (pg.channels.size() == 1)
    channel = pg.channels[0];
  else
    return Error{
        "Could not determine a channel to use publish to from settings or PGNotify config "
        "(set brokers.pg_notify.default_publish_channel)"};
  if (auto ok = dispatcherd::validate_channel_name(channel); !ok.ok()) return ok.error();
  return channel;
}

std::string new_reply_channel() {
  return "reply_to_" + dispatcherd::uuid4_underscored();
}

std::string build_control_request(std::string_view command, std::string_view reply_to,
                                  const json& control_data) {
  nlohmann::ordered_json req;
  req["control"] = command;
  req["reply_to"] = reply_to;
  if (control_data.is_object() && !control_data.empty()) req["control_data"] = control_data;
  return dispatcherd::dump_reply(req);
}

bool ReplyCollector::add(std::string_view payload, double now) {
  auto parsed = dispatcherd::parse_json(payload);
  if (!parsed.ok() || !parsed->is_object()) {
    replies_.push_back({{"error", "JSON parse error"}, {"original", std::string(payload)}});
    return true;
  }
  auto in = chunks_.ingest(*parsed, now);
  switch (in.outcome) {
    case dispatcherd::ChunkAccumulator::Outcome::NotChunk:
      replies_.push_back(std::move(parsed).value());
      return true;
    case dispatcherd::ChunkAccumulator::Outcome::Complete:
      replies_.push_back(std::move(in.message));
      return true;
    case dispatcherd::ChunkAccumulator::Outcome::Incomplete:
    case dispatcherd::ChunkAccumulator::Outcome::Error:  // already logged by the accumulator
      break;
  }
  return false;
}

}  // namespace dispatcherctl
