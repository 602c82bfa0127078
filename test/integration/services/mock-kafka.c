/*
 * mock-kafka: a Kafka-protocol broker for integration tests, on librdkafka's
 * mock cluster (librdkafka/rdkafka_mock.h). Built and run by kafka.ts.
 *
 *   mock-kafka [--brokers N] [--topic name:partitions[:replication]]...
 *
 * Prints one line "BOOTSTRAP host:port,..." on stdout once listening, then
 * reads one command per line on stdin and answers "OK" or "ERR <message>":
 *
 *   create <topic> <partitions> [replication]
 *   down <brokerId>             stop a broker's listener, drop its connections
 *   up <brokerId>
 *   leader <topic> <partition> <brokerId>   (-1: leaderless)
 *   rtt <brokerId> <ms>         delay every response of a broker
 *   errors <apiKey> <err>...    fail the next requests of that ApiKey, one per
 *                               code (numeric Kafka error codes; -195 is
 *                               "disconnect the client")
 *   clear <apiKey>              drop the pending errors of that ApiKey
 *   quit
 *
 * It exits on "quit" or at end of stdin, so it dies with the process that
 * started it. librdkafka's own log lines go to stderr.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_ERRORS 64

static rd_kafka_t *rk;
static rd_kafka_mock_cluster_t *mcluster;
static int broker_cnt = 1;

static void usage(const char *why) {
        fprintf(stderr,
                "mock-kafka: %s\n"
                "usage: mock-kafka [--brokers N] "
                "[--topic name:partitions[:replication]]...\n",
                why);
        exit(2);
}

/* Parses a whole base-10 integer; 0 on success. */
static int parse_int(const char *s, long min, long max, long *out) {
        char *end;
        long v;
        if (!s || !*s)
                return -1;
        errno = 0;
        v     = strtol(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -1;
        *out = v;
        return 0;
}

static int default_replication(void) {
        return broker_cnt < 3 ? broker_cnt : 3;
}

static rd_kafka_resp_err_t create_topic(const char *name, long partitions,
                                        long replication) {
        return rd_kafka_mock_topic_create(mcluster, name, (int)partitions,
                                          (int)replication);
}

/* "name:partitions[:replication]" from the command line. */
static void topic_arg(const char *arg) {
        char buf[512];
        char *name, *parts, *repl;
        long p, r = default_replication();
        rd_kafka_resp_err_t err;

        if (strlen(arg) >= sizeof(buf))
                usage("topic spec too long");
        strcpy(buf, arg);
        name  = buf;
        parts = strchr(name, ':');
        if (!parts)
                usage("--topic needs name:partitions");
        *parts++ = '\0';
        repl     = strchr(parts, ':');
        if (repl)
                *repl++ = '\0';
        if (!*name || parse_int(parts, 1, 100000, &p) ||
            (repl && parse_int(repl, 1, broker_cnt, &r)))
                usage("bad --topic spec");
        err = create_topic(name, p, r);
        if (err) {
                fprintf(stderr, "mock-kafka: creating topic %s: %s\n", name,
                        rd_kafka_err2str(err));
                exit(1);
        }
}

static void reply(rd_kafka_resp_err_t err) {
        if (err)
                printf("ERR %s\n", rd_kafka_err2str(err));
        else
                printf("OK\n");
}

/* Runs one command line; returns 1 on quit. */
static int command(char *line) {
        char *argv[2 + MAX_ERRORS];
        int argc = 0;
        char *tok, *save = NULL;
        long a, b, c;

        for (tok = strtok_r(line, " \t\r\n", &save);
             tok && argc < (int)(sizeof(argv) / sizeof(argv[0]));
             tok = strtok_r(NULL, " \t\r\n", &save))
                argv[argc++] = tok;

        if (argc == 0) {
                printf("ERR empty command\n");
        } else if (!strcmp(argv[0], "quit")) {
                printf("OK\n");
                return 1;
        } else if (!strcmp(argv[0], "create")) {
                c = default_replication();
                if ((argc != 3 && argc != 4) ||
                    parse_int(argv[2], 1, 100000, &a) ||
                    (argc == 4 && parse_int(argv[3], 1, broker_cnt, &c)))
                        printf("ERR usage: create <topic> <partitions> "
                               "[replication<=%d]\n",
                               broker_cnt);
                else
                        reply(create_topic(argv[1], a, c));
        } else if (!strcmp(argv[0], "down") || !strcmp(argv[0], "up")) {
                if (argc != 2 || parse_int(argv[1], 1, INT32_MAX, &a))
                        printf("ERR usage: %s <brokerId>\n", argv[0]);
                else if (a > broker_cnt)
                        printf("ERR no broker %ld (brokers are 1..%d)\n", a,
                               broker_cnt);
                else if (!strcmp(argv[0], "down"))
                        reply(rd_kafka_mock_broker_set_down(mcluster,
                                                            (int32_t)a));
                else
                        reply(
                            rd_kafka_mock_broker_set_up(mcluster, (int32_t)a));
        } else if (!strcmp(argv[0], "leader")) {
                if (argc != 4 || parse_int(argv[2], 0, INT32_MAX, &a) ||
                    parse_int(argv[3], -1, broker_cnt, &b))
                        printf("ERR usage: leader <topic> <partition> "
                               "<brokerId|-1>\n");
                else
                        reply(rd_kafka_mock_partition_set_leader(
                            mcluster, argv[1], (int32_t)a, (int32_t)b));
        } else if (!strcmp(argv[0], "rtt")) {
                if (argc != 3 || parse_int(argv[1], 1, broker_cnt, &a) ||
                    parse_int(argv[2], 0, INT_MAX, &b))
                        printf("ERR usage: rtt <brokerId> <ms>\n");
                else
                        reply(rd_kafka_mock_broker_set_rtt(
                            mcluster, (int32_t)a, (int)b));
        } else if (!strcmp(argv[0], "errors")) {
                rd_kafka_resp_err_t errs[MAX_ERRORS];
                int i, ok = argc >= 3 && !parse_int(argv[1], 0, 32767, &a);
                for (i = 2; ok && i < argc; i++) {
                        ok = !parse_int(argv[i], -200, 32767, &b);
                        errs[i - 2] = (rd_kafka_resp_err_t)b;
                }
                if (!ok) {
                        printf("ERR usage: errors <apiKey> <errorCode>...\n");
                } else {
                        rd_kafka_mock_push_request_errors_array(
                            mcluster, (int16_t)a, (size_t)(argc - 2), errs);
                        printf("OK\n");
                }
        } else if (!strcmp(argv[0], "clear")) {
                if (argc != 2 || parse_int(argv[1], 0, 32767, &a)) {
                        printf("ERR usage: clear <apiKey>\n");
                } else {
                        rd_kafka_mock_clear_request_errors(mcluster,
                                                           (int16_t)a);
                        printf("OK\n");
                }
        } else {
                printf("ERR unknown command %s\n", argv[0]);
        }
        return 0;
}

int main(int argc, char **argv) {
        char errstr[512];
        char line[4096];
        rd_kafka_conf_t *conf;
        int i;
        long n;

        /* Brokers first: topic replication is checked against it. */
        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--brokers")) {
                        if (i + 1 >= argc || parse_int(argv[i + 1], 1, 64, &n))
                                usage("--brokers needs a number 1..64");
                        broker_cnt = (int)n;
                        i++;
                } else if (!strcmp(argv[i], "--topic")) {
                        if (i + 1 >= argc)
                                usage("--topic needs name:partitions");
                        i++;
                } else {
                        usage("unknown argument");
                }
        }

        /* The handle only hosts the cluster: it never connects anywhere. */
        conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "log_level", "4", errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "mock-kafka: %s\n", errstr);
                return 1;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "mock-kafka: rd_kafka_new: %s\n", errstr);
                return 1;
        }
        mcluster = rd_kafka_mock_cluster_new(rk, broker_cnt);
        if (!mcluster) {
                fprintf(stderr, "mock-kafka: could not create mock cluster\n");
                return 1;
        }

        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--topic"))
                        topic_arg(argv[++i]);
                else if (!strcmp(argv[i], "--brokers"))
                        i++;
        }

        setvbuf(stdout, NULL, _IOLBF, 0);
        printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
        fflush(stdout);

        while (fgets(line, sizeof(line), stdin)) {
                int quit = command(line);
                fflush(stdout);
                if (quit)
                        break;
        }

        /* A clean teardown, but never hang on the way out. */
        alarm(5);
        rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(rk);
        return 0;
}
