// Tasks shipped as a shared object for the stock dispatcherd binary:
//   extensions:
//     task_libraries: [./libexample_tasks.so]   # relative to the config file's directory
// Loading runs the DISPATCHERD_TASK registrations below, in the main process, before any
// worker exists. Do not start threads or open connections at load time: dispatcherd refuses a
// library that starts a thread, and workers are forked from the loading process.
#include <dispatcherd/task.h>

#include <fstream>
#include <stdexcept>
#include <string>

DISPATCHERD_TASK_LIBRARY();

namespace {

// {"task": "example.append_line", "kwargs": {"path": "/tmp/out", "text": "hi"}}: appends
// "<text> <uuid>" to the file.
nlohmann::json append_line(dispatcherd::TaskContext& ctx) {
  const std::string path = ctx.kwargs().value("path", std::string());
  if (path.empty()) throw std::invalid_argument("example.append_line needs kwarg 'path'");
  std::ofstream out(path, std::ios::app);
  out << ctx.kwargs().value("text", std::string()) << ' ' << ctx.uuid() << '\n';
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
  return nullptr;
}

// {"task": "example.sum", "args": [1, 2, 3]} -> 6
nlohmann::json sum(dispatcherd::TaskContext& ctx) {
  double total = 0;
  for (const auto& a : ctx.args()) total += a.get<double>();
  return total;
}

}  // namespace

DISPATCHERD_TASK("example.append_line", append_line);
DISPATCHERD_TASK("example.sum", sum);
