/* Empty on purpose. librdkafka 2.11-2.12 (src/rdkafka_conf.c) includes <curl/curl.h> under
 * `#ifdef WITH_OAUTHBEARER_OIDC`, but its CMake config always defines that macro (to 0 without
 * curl), so a build without curl still needs the header to exist; nothing from it is used.
 * Upstream: confluentinc/librdkafka issues 5135 and 5204, fix in pull request 5309. */
