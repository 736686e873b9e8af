#include "app.h"

#include <ostream>

#include "control_client.h"
#include "dispatcherd/config.h"
#include "dispatcherd/log.h"
#include "dispatcherd/message.h"
#include "request.h"
#include "submit.h"
#include "yaml_output.h"

namespace dispatcherctl {

using nlohmann::json;

std::string format_replies(const std::vector<json>& replies, bool as_json) {
  const json list(replies);
  if (as_json) return dispatcherd::dump_python(list) + "\n";
  // yaml.dump's text ends with "\n"; upstream print()s it, which adds the blank line.
  return to_pyyaml(list) + "\n";
}

namespace {

dispatcherd::Result<std::vector<json>> ask(const Invocation& inv) {
  const WaitPolicy wait{inv.common.expected_replies, inv.common.timeout};
  if (!inv.common.socket.empty()) return control_over_socket(inv.common.socket, inv.control, wait);
  const std::string path = dispatcherd::resolve_config_path(inv.common.config);
  auto config = dispatcherd::load_config(path);
  if (!config.ok()) return config.error();
  // Python-only keys and the like matter to the service, not to a client.
  for (const std::string& w : config->warnings) LOG_DEBUG(w);
  dispatcherd::apply_conninfo_override(*config);
  auto broker = choose_control_broker(*config);
  if (!broker.ok()) return broker.error();
  if (*broker == BrokerKind::Socket)
    return control_over_socket(config->socket.socket_path, inv.control, wait);
  return control_over_pg(config->pg_notify, inv.control, wait);
}

}  // namespace

int run_invocation(const Invocation& inv, std::ostream& out, std::ostream& err) {
  dispatcherd::log::set_fd(2);
  dispatcherd::log::set_process_name("dispatcherctl");
  dispatcherd::log::set_level(inv.common.log_level);
  if (inv.submit) return run_submit(inv, err);

  auto replies = ask(inv);
  if (!replies.ok()) {
    err << "dispatcherctl: " << replies.error().message << "\n";
    return 1;
  }
  out << format_replies(*replies, inv.common.json) << std::flush;
  const std::size_t got = replies->size();
  const int expected = inv.common.expected_replies;
  if (got < static_cast<std::size_t>(expected)) {
    LOG_ERROR("Obtained only " << got << " of " << expected << ", exiting with non-zero code");
    return 1;
  }
  return 0;
}

}  // namespace dispatcherctl
