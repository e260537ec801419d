"""Run in a separate process: one instance of the service receiving copies of a delivery at
once, as a gunicorn worker (or another host) would. For handover/test_handover.py."""

from concurrent.futures import ThreadPoolExecutor


def deliver_copies(environ, body, headers, copies, start, results):
    from app import create_app  # in this process: its own app, its own store connections

    client = create_app(environ).test_client()
    start.wait()  # every process sends at the same moment

    def deliver(_):
        response = client.post("/stream-incoming-wh", data=body, headers=headers)
        return response.status_code, response.get_json().get("outcome")

    with ThreadPoolExecutor(copies) as pool:
        results.put(list(pool.map(deliver, range(copies))))
