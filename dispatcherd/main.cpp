// dispatcherd: the service's entry point. Everything but start-up lives in dispatcherd_core.
#include "dispatcherd/task.h"

int main(int argc, char** argv) { return dispatcherd::run_service(argc, argv); }
