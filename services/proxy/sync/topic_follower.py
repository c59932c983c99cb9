"""The proxy's rooms follow topics with shared.topic_follower (the pricer follows the catalog
topic with it too); this name stays so their imports need not change."""

from shared.topic_follower import FollowerStalled, TopicFollower

__all__ = ["FollowerStalled", "TopicFollower"]
