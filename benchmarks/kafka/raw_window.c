/* raw_window: the ceiling an ingestion API with W requests in flight meets on a Kafka cluster.
 * A raw librdkafka producer with kafka::producer's settings (idempotent, acks=all, linger 5 ms)
 * that keeps at most W messages waiting for their delivery reports for SECONDS, each message a
 * keyed ~130-byte value (the predictions example's size), and prints one line:
 *   raw_window: W in flight, N delivered in S s = R msgs/s, latency p50 A ms p99 B ms, client CPU C us/msg
 * Used by benchmarks/predictions.sh (compiled there with cc and pkg-config rdkafka: no CMake
 * target). Usage: raw_window BOOTSTRAP TOPIC PARTITIONS W SECONDS [name value]... (extra
 * librdkafka properties, as kafka::config::properties). TOPIC is created first when missing
 * (PARTITIONS, replication factor 3, min.insync.replicas 2, as the examples create theirs).
 * Exit 1 on a failed delivery, a topic that could not be created, or a bad argument.
 * `raw_window BOOTSTRAP --delete TOPIC...` deletes topics instead (a benchmark's own, on a
 * cluster it shares): exit 1 when one could not be deleted (a missing one is fine).
 * `raw_window BOOTSTRAP --count` prints "cluster: T topics, P partitions" (internal topics
 * included): a long-lived test cluster holding hundreds of leftover topics runs a benchmark at
 * half its rate (docs/benchmarks_history.md, 2026-12-04 21:18).
 * `raw_window BOOTSTRAP --offsets TOPIC...` prints "TOPIC N" for each topic, N the sum of its
 * partitions' high watermarks: the messages ever written to it (benchmarks/checkout_throughput.sh
 * counts a run's messages per checkout from two of these); exit 1 when one could not be read. */
#include <librdkafka/rdkafka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long delivered, failed;
static double* latencies; /* one per delivered message, in seconds */
static long latency_capacity;

static void on_delivery(rd_kafka_t* rk, const rd_kafka_message_t* m, void* opaque) {
  (void)rk;
  (void)opaque;
  const double sent = *(const double*)m->_private;
  free(m->_private);
  if (m->err) {
    if (failed++ == 0) fprintf(stderr, "raw_window: delivery failed: %s\n", rd_kafka_err2str(m->err));
    return;
  }
  if (delivered < latency_capacity) latencies[delivered] = now_s() - sent;
  ++delivered;
}

static int by_value(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* Creates `topic` (partitions, RF 3, min ISR 2); an existing topic is fine. */
static int create_topic(rd_kafka_t* rk, const char* topic, int partitions) {
  char err[512];
  rd_kafka_NewTopic_t* t = rd_kafka_NewTopic_new(topic, partitions, 3, err, sizeof err);
  if (!t || rd_kafka_NewTopic_set_config(t, "min.insync.replicas", "2")) {
    fprintf(stderr, "raw_window: topic %s: %s\n", topic, err);
    return 1;
  }
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &t, 1, NULL, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  int failed_create = 1;
  if (ev) {
    size_t n = 0;
    const rd_kafka_topic_result_t** r = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    const rd_kafka_resp_err_t e = n ? rd_kafka_topic_result_error(r[0]) : rd_kafka_event_error(ev);
    failed_create = e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS;
    if (failed_create) fprintf(stderr, "raw_window: create topic %s: %s\n", topic, rd_kafka_err2str(e));
    rd_kafka_event_destroy(ev);
  } else {
    fprintf(stderr, "raw_window: create topic %s: no answer in 30 s\n", topic);
  }
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(t);
  return failed_create;
}

/* Deletes `topics`; a topic already gone is fine. */
static int delete_topics(rd_kafka_t* rk, char** topics, int n) {
  rd_kafka_DeleteTopic_t** t = malloc(sizeof(rd_kafka_DeleteTopic_t*) * (size_t)n);
  for (int i = 0; i < n; ++i) t[i] = rd_kafka_DeleteTopic_new(topics[i]);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_DeleteTopics(rk, t, (size_t)n, NULL, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  int failed_delete = 1;
  if (ev) {
    size_t m = 0;
    const rd_kafka_topic_result_t** r = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &m);
    failed_delete = rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR;
    for (size_t i = 0; i < m; ++i) {
      const rd_kafka_resp_err_t e = rd_kafka_topic_result_error(r[i]);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) continue;
      fprintf(stderr, "raw_window: delete topic %s: %s\n", rd_kafka_topic_result_name(r[i]), rd_kafka_err2str(e));
      failed_delete = 1;
    }
    rd_kafka_event_destroy(ev);
  } else {
    fprintf(stderr, "raw_window: delete topics: no answer in 30 s\n");
  }
  rd_kafka_queue_destroy(q);
  rd_kafka_DeleteTopic_destroy_array(t, (size_t)n);
  free(t);
  return failed_delete;
}

static int set(rd_kafka_conf_t* c, const char* name, const char* value) {
  char err[512];
  if (rd_kafka_conf_set(c, name, value, err, sizeof err) == RD_KAFKA_CONF_OK) return 0;
  fprintf(stderr, "raw_window: %s: %s\n", name, err);
  return 1;
}

/* Prints the cluster's topic and partition counts; 1 when the metadata could not be read. */
static int count_topics(rd_kafka_t* rk) {
  const struct rd_kafka_metadata* md = NULL;
  const rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
  if (e) {
    fprintf(stderr, "raw_window: metadata: %s\n", rd_kafka_err2str(e));
    return 1;
  }
  long partitions = 0;
  for (int i = 0; i < md->topic_cnt; ++i) partitions += md->topics[i].partition_cnt;
  printf("cluster: %d topics, %ld partitions\n", md->topic_cnt, partitions);
  rd_kafka_metadata_destroy(md);
  return 0;
}

/* Prints "TOPIC N" for each of `topics`, N the sum of its partitions' high watermarks; 1 when
 * the metadata or a watermark could not be read or a topic does not exist. Reads the metadata of
 * all topics: a request naming a missing topic would create it on a broker that auto-creates. */
static int print_offsets(rd_kafka_t* rk, char** topics, int n) {
  const struct rd_kafka_metadata* md = NULL;
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
  if (e) {
    fprintf(stderr, "raw_window: metadata: %s\n", rd_kafka_err2str(e));
    return 1;
  }
  int failed_read = 0;
  for (int i = 0; i < n; ++i) {
    const struct rd_kafka_metadata_topic* t = NULL;
    for (int k = 0; k < md->topic_cnt && !t; ++k)
      if (strcmp(md->topics[k].topic, topics[i]) == 0) t = &md->topics[k];
    e = t ? t->err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    long long total = 0;
    for (int p = 0; !e && p < t->partition_cnt; ++p) {
      int64_t low = 0, high = 0;
      e = rd_kafka_query_watermark_offsets(rk, topics[i], t->partitions[p].id, &low, &high, 10000);
      total += high;
    }
    if (e) {
      fprintf(stderr, "raw_window: offsets of %s: %s\n", topics[i], rd_kafka_err2str(e));
      failed_read = 1;
    } else {
      printf("%s %lld\n", topics[i], total);
    }
  }
  rd_kafka_metadata_destroy(md);
  return failed_read;
}

/* A producer handle on BOOTSTRAP for the admin modes; NULL (said why) when it could not be made. */
static rd_kafka_t* admin_handle(const char* bootstrap) {
  char err[512];
  rd_kafka_conf_t* c = rd_kafka_conf_new();
  if (set(c, "bootstrap.servers", bootstrap)) {
    rd_kafka_conf_destroy(c);
    return NULL;
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
  if (!rk) fprintf(stderr, "raw_window: %s\n", err);
  return rk;
}

int main(int argc, char** argv) {
  const int counting = argc == 3 && strcmp(argv[2], "--count") == 0;
  const int deleting = argc >= 4 && strcmp(argv[2], "--delete") == 0;
  const int offsets = argc >= 4 && strcmp(argv[2], "--offsets") == 0;
  if (counting || deleting || offsets) {
    rd_kafka_t* rk = admin_handle(argv[1]);
    if (!rk) return 1;
    const int failed = counting   ? count_topics(rk)
                       : deleting ? delete_topics(rk, argv + 3, argc - 3)
                                  : print_offsets(rk, argv + 3, argc - 3);
    rd_kafka_destroy(rk);
    return failed;
  }
  if (argc < 6 || argc % 2 != 0) {
    fprintf(stderr, "usage: raw_window BOOTSTRAP TOPIC PARTITIONS W SECONDS [name value]...\n");
    return 1;
  }
  const char* topic = argv[2];
  const int partitions = atoi(argv[3]);
  const long window = atol(argv[4]);
  const double seconds = atof(argv[5]);
  rd_kafka_conf_t* c = rd_kafka_conf_new();
  if (set(c, "bootstrap.servers", argv[1]) || set(c, "enable.idempotence", "true") || set(c, "acks", "all") ||
      set(c, "linger.ms", "5"))
    return 1;
  for (int i = 6; i + 1 < argc; i += 2)
    if (set(c, argv[i], argv[i + 1])) return 1;
  rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "raw_window: %s\n", err);
    return 1;
  }
  if (create_topic(rk, topic, partitions)) return 1;
  /* A first message, so that the producer id and the topic's metadata are in hand. */
  double* first = malloc(sizeof(double));
  *first = now_s();
  rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE("warm", 4), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_OPAQUE(first), RD_KAFKA_V_END);
  latency_capacity = 10000000;
  latencies = malloc(sizeof(double) * (size_t)latency_capacity);
  rd_kafka_flush(rk, 30000);
  if (failed) return 1;
  delivered = 0;
  const char* value = "{\"id\":\"01a23d3c818982157acc00000000\",\"receivedAt\":1796323705224,\"team1\":\"France\","
                      "\"team2\":\"Morocco\",\"score\":\"1-1\",\"phase\":4}";
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  const double start = now_s();
  long sent = 0;
  while (now_s() - start < seconds && !failed) {
    while (sent - delivered - failed < window) {
      char key[32];
      const int n = snprintf(key, sizeof key, "k%ld", sent);
      double* stamp = malloc(sizeof(double));
      *stamp = now_s();
      if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, (size_t)n),
                            RD_KAFKA_V_VALUE((void*)value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_OPAQUE(stamp), RD_KAFKA_V_END)) {
        free(stamp);
        break;
      }
      ++sent;
    }
    rd_kafka_poll(rk, 10);
  }
  const double elapsed = now_s() - start;
  const long counted = delivered; /* delivered within the run */
  rd_kafka_flush(rk, 30000);
  getrusage(RUSAGE_SELF, &r1);
  const double cpu =
      (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
      (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
  const long n = delivered < latency_capacity ? delivered : latency_capacity;
  qsort(latencies, (size_t)n, sizeof(double), by_value);
  printf(
      "raw_window: %ld in flight, %ld delivered in %.1f s = %.0f msgs/s, latency p50 %.1f ms p99 %.1f ms, client CPU "
      "%.0f us/msg\n",
      window, counted, elapsed, (double)counted / elapsed, n ? latencies[n / 2] * 1e3 : 0.0,
      n ? latencies[n * 99 / 100] * 1e3 : 0.0, delivered ? cpu / (double)delivered * 1e6 : 0.0);
  rd_kafka_destroy(rk);
  free(latencies);
  return failed ? 1 : 0;
}
