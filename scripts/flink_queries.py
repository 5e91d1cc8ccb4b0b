"""The three windowed queries of `scripts/compare-flink`, run by Flink (PyFlink, streaming
mode, parallelism 1) on a JSON-lines file of Nexmark bids into a blackhole sink.

    python flink_queries.py BIDS_FILE tumble|session|hop

Prints how long the query took from its submission to its end, in seconds (the JVM's
start-up before it is not counted).
"""

import sys
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

QUERIES = {
    "tumble": (
        "window_start TIMESTAMP(3), window_end TIMESTAMP(3), max_price BIGINT",
        """SELECT window_start, window_end, MAX(price)
           FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
           GROUP BY window_start, window_end""",
    ),
    "session": (
        "bidder BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT",
        """SELECT bidder, window_start, window_end, COUNT(*)
           FROM TABLE(SESSION(TABLE bids PARTITION BY bidder, DESCRIPTOR(date_time),
                              INTERVAL '10' SECOND))
           GROUP BY bidder, window_start, window_end""",
    ),
    "hop": (
        "auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT",
        """SELECT auction, window_start, window_end, COUNT(*)
           FROM TABLE(HOP(TABLE bids, DESCRIPTOR(date_time), INTERVAL '2' SECOND,
                          INTERVAL '10' SECOND))
           GROUP BY auction, window_start, window_end""",
    ),
}


def main():
    path, name = sys.argv[1], sys.argv[2]
    columns, query = QUERIES[name]
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("parallelism.default", "1")
    env.execute_sql(
        f"""CREATE TABLE bids (
              auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
              date_time TIMESTAMP(3), extra STRING,
              WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
            ) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json',
                    'json.timestamp-format.standard' = 'ISO-8601')"""
    )
    env.execute_sql(f"CREATE TABLE sink ({columns}) WITH ('connector' = 'blackhole')")
    started = time.monotonic()
    env.execute_sql(f"INSERT INTO sink {query}").wait()
    print(f"{time.monotonic() - started:.2f}")


if __name__ == "__main__":
    main()
