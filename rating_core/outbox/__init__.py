"""What leaves for the provincial platform and other subscribers: the outbox of events written in the
same transaction as the change they announce, the webhook endpoints, the payload's schema.
"""
