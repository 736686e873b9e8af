#!/usr/bin/python3
"""Publish one task with upstream's own publisher API (dispatcherd.publish.submit_task), plus
the psycopg 3.1 shim. The task name is given, not a real Python function: upstream serializes a
callable as "<__module__>.<__qualname__>", so a stand-in function carries the name.
usage: publish_task.py CONFIG TASK_NAME UUID KWARGS_JSON   (PYTHONPATH must hold upstream's tree)
Prints {"body": <the published message>, "queue": <the channel used>} as JSON."""
import json
import sys

if __name__ == '__main__':
    import psycopg_shim

    psycopg_shim.apply()

    from dispatcherd.config import setup
    from dispatcherd.publish import submit_task

    config, name, uuid, kwargs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    setup(file_path=config)

    def stand_in(**_kwargs):
        raise RuntimeError('runs in the C++ service, never here')

    stand_in.__module__, _, stand_in.__qualname__ = name.rpartition('.')
    stand_in.__name__ = stand_in.__qualname__
    body, queue = submit_task(stand_in, kwargs=kwargs, uuid=uuid)
    print(json.dumps({'body': body, 'queue': queue}))
