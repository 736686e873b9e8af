// A service with its own tasks (library mode): the tasks are registered at static-init time
// and main() hands over to dispatcherd::run_service, which takes the same command line as the
// stock `dispatcherd` binary (--config, --list-tasks, --check-config, ...).
#include <dispatcherd/task.h>

#include <fstream>
#include <stdexcept>
#include <string>

namespace {

// {"task": "demo.hello", "kwargs": {"name": "Ada"}} -> "hello Ada"
nlohmann::json hello(dispatcherd::TaskContext& ctx) {
  return "hello " + ctx.kwargs().value("name", std::string("world"));
}

// {"task": "wiki.touch", "kwargs": {"wiki": "enwiki", "path": "/tmp/touched"}}: appends
// "<wiki> <uuid>" to the file, standing in for real per-wiki work.
nlohmann::json touch(dispatcherd::TaskContext& ctx) {
  const std::string path = ctx.kwargs().value("path", std::string());
  if (path.empty()) throw std::invalid_argument("wiki.touch needs kwarg 'path'");
  std::ofstream out(path, std::ios::app);
  out << ctx.kwargs().value("wiki", std::string("unknown")) << ' ' << ctx.uuid() << '\n';
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
  return {{"wiki", ctx.kwargs().value("wiki", std::string("unknown"))}};
}

}  // namespace

DISPATCHERD_TASK("demo.hello", hello);
DISPATCHERD_TASK("wiki.touch", touch);

int main(int argc, char** argv) {
  return dispatcherd::run_service(argc, argv);
}
