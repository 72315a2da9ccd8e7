DROP INDEX known_devices_recent;
DROP TABLE known_devices;
DROP TABLE email_opt_outs;
