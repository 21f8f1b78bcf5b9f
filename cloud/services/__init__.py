"""Real services for the cloud, the demo and the end-to-end tests.

A per-device PKI (`pki`), an MQTT broker (`broker`: Mosquitto when installed, an in-process
amqtt broker otherwise) and a throwaway PostgreSQL (`postgres`). Each starts a real server
process on a free local port, so sync and ingest are tested against the real thing.
"""
