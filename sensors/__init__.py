"""The wire side of field stations: MQTT topics, payload parsing, the simulator and the gateway agent."""
