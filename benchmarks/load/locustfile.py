# Benchmark peer: the same load as nowait.yaml with Locust's fastest client.
from locust import FastHttpUser, task


class Hammer(FastHttpUser):
    @task
    def get(self):
        self.client.get("/")
