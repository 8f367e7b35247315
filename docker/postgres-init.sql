-- Runs once, when the postgres volume is first created: the results database beside Airflow's own.
CREATE DATABASE hashtagger OWNER airflow;
