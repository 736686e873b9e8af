#include "control_client.h"

#include <chrono>

#include "dispatcherd/chunking.h"
#include "dispatcherd/log.h"
#include "pg_client.h"
#include "request.h"
#include "socket_client.h"

namespace dispatcherctl {

using dispatcherd::Error;
using dispatcherd::Result;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double mono_seconds() {
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

Clock::time_point deadline_after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

void log_done(const ControlSpec& spec, Clock::time_point start, Clock::time_point sent,
              std::size_t got, const WaitPolicy& wait) {
  LOG_INFO("control-and-reply " << spec.command << " returned in " << seconds_since(start)
                                << " seconds (round-trip " << seconds_since(sent) << ")");
  if (wait.expected_replies > 0 && got < static_cast<std::size_t>(wait.expected_replies))
    LOG_INFO("Did not receive " << wait.expected_replies << " reply in " << wait.timeout
                                << " seconds, only " << got);
}

}  // namespace

Result<std::vector<json>> control_over_pg(const dispatcherd::PgNotifyConfig& pg,
                                          const ControlSpec& spec, WaitPolicy wait) {
  const auto start = Clock::now();
  auto channel = choose_channel(pg);
  if (!channel.ok()) return channel.error();
  const std::string reply_to = new_reply_channel();
  const std::string request = build_control_request(spec.command, reply_to, spec.data);
  auto pieces = dispatcherd::split_message(request, dispatcherd::kPgNotifyMaxBytes);
  if (!pieces.ok()) return pieces.error();

  auto client = PgClient::connect(pg.conninfo);
  if (!client.ok()) return client.error();
  if (auto s = client->listen(reply_to); !s.ok()) return s.error();
  for (const std::string& piece : *pieces)
    if (auto s = client->notify(*channel, piece); !s.ok()) return s.error();
  LOG_DEBUG("Sent pg_notify message of " << request.size() << " chars as " << pieces->size()
                                         << " chunk(s) to " << *channel);
  const auto sent = Clock::now();

  ReplyCollector collector;
  auto waited = client->wait(deadline_after(wait.timeout),
                             [&](std::string_view ch, std::string_view payload) {
                               if (ch != reply_to) return false;
                               collector.add(payload, mono_seconds());
                               return collector.satisfied(wait.expected_replies);
                             });
  if (!waited.ok()) return waited.error();
  // No UNLISTEN: the session ends right after, and its LISTENs with it (one round trip less).
  log_done(spec, start, sent, collector.replies().size(), wait);
  return collector.replies();
}

Result<std::vector<json>> control_over_socket(const std::string& socket_path,
                                              const ControlSpec& spec, WaitPolicy wait) {
  const auto start = Clock::now();
  // The socket broker answers on the connection whatever reply_to says, but only requests
  // with a reply_to get an answer at all (§3.2).
  const std::string request = build_control_request(spec.command, new_reply_channel(), spec.data);
  auto pieces = dispatcherd::split_message(request, dispatcherd::kSocketMaxBytes);
  if (!pieces.ok()) return pieces.error();
  auto client = SocketClient::connect(socket_path);
  if (!client.ok()) return client.error();
  if (auto s = client->send_lines(*pieces); !s.ok()) return s.error();
  const auto sent = Clock::now();

  ReplyCollector collector;
  auto read = client->read_lines(deadline_after(wait.timeout), [&](std::string_view line) {
    collector.add(line, mono_seconds());
    return collector.satisfied(wait.expected_replies);
  });
  if (!read.ok()) return read.error();
  log_done(spec, start, sent, collector.replies().size(), wait);
  return collector.replies();
}

}  // namespace dispatcherctl
