#include "submit.h"

#include <algorithm>
#include <ostream>

#include "dispatcherd/config.h"
#include "dispatcherd/log.h"
#include "request.h"

namespace dispatcherctl {

dispatcherd::TaskMessage task_message(const SubmitOptions& o, int i) {
  dispatcherd::TaskMessage m;
  m.task = o.task;
  m.queue = o.queue;
  if (!o.uuid.empty()) m.uuid = o.count == 1 ? o.uuid : o.uuid + "-" + std::to_string(i);
  m.args = o.args;
  m.kwargs = o.kwargs;
  m.timeout = o.timeout;
  m.delay = o.delay;
  // The CLI accepts only the four names, so an unknown one cannot get here.
  if (o.on_duplicate) m.on_duplicate = dispatcherd::parse_on_duplicate(*o.on_duplicate);
  return m;
}

int run_submit(const Invocation& inv, std::ostream& err) {
  auto fail = [&err](const std::string& message) {
    err << "dispatcherctl: " << message << "\n";
    return 1;
  };
  const std::string path = dispatcherd::resolve_config_path(inv.common.config);
  auto config = dispatcherd::load_config(path);
  if (!config.ok()) return fail(config.error().message);
  for (const std::string& w : config->warnings) LOG_DEBUG(w);
  dispatcherd::apply_conninfo_override(*config);
  if (auto broker = choose_publish_broker(*config); !broker.ok())
    return fail(broker.error().message);
  auto channel = choose_channel(config->pg_notify, inv.submit_options.queue);
  if (!channel.ok()) return fail(channel.error().message);

  dispatcherd::PublisherOptions po;
  po.conninfo = config->pg_notify.conninfo;
  po.default_channel = *channel;
  auto publisher = dispatcherd::Publisher::connect(po);
  if (!publisher.ok()) return fail(publisher.error().message);

  const SubmitOptions& o = inv.submit_options;
  std::size_t published = 0, failed = 0, batches = 0;
  std::string first_failure;
  std::vector<dispatcherd::TaskMessage> batch;
  batch.reserve(std::min<std::size_t>(kSubmitBatchSize, static_cast<std::size_t>(o.count)));
  for (int i = 0; i < o.count;) {
    batch.clear();
    for (; i < o.count && batch.size() < kSubmitBatchSize; ++i) batch.push_back(task_message(o, i));
    // One transaction per message, like upstream's autocommit publishing: a refused message
    // costs only itself, and equal bodies are never merged by Postgres.
    auto report = publisher->publish_batch(batch, dispatcherd::BatchMode::TransactionPerMessage);
    ++batches;
    if (!report.ok()) {
      if (published == 0) return fail(report.error().message);
      return fail(report.error().message + " (" + std::to_string(published) +
                  " task(s) were published before)");
    }
    published += report->published.size();
    failed += report->failures.size();
    if (first_failure.empty() && !report->failures.empty())
      first_failure = report->failures.front().error;
  }
  LOG_INFO("published " << published << " message(s) in " << batches << " round trip(s)");
  if (failed > 0)
    return fail(std::to_string(failed) + " of " + std::to_string(o.count) +
                " task(s) were not published; first error: " + first_failure);
  err << "submitted " << published << " task(s) to " << *channel << "\n";
  return 0;
}

}  // namespace dispatcherctl
